"""Every role's meta/argument_specs.yml documents exactly its defaults/main.yml.

A default that is missing from the spec is never validated or documented; a spec default that
differs from defaults/main.yml documents a value the role does not use.
"""
import pathlib

import pytest
import yaml

ROLES = pathlib.Path(__file__).resolve().parents[3] / "roles"
ROLE_NAMES = sorted(p.name for p in ROLES.iterdir() if (p / "meta" / "argument_specs.yml").exists())


def load(role, relative):
    return yaml.safe_load((ROLES / role / relative).read_text())


def test_the_four_roles_have_specs():
    assert {"iscsi_target", "iscsi_initiator", "hypervisor", "drs_timer"} <= set(ROLE_NAMES)


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_spec_options_are_the_defaults(role):
    defaults = load(role, "defaults/main.yml")
    options = load(role, "meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    assert sorted(options) == sorted(defaults)
    for name, value in defaults.items():
        assert options[name].get("default") == value, name


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_every_option_has_type_and_description(role):
    options = load(role, "meta/argument_specs.yml")["argument_specs"]["main"]["options"]

    def walk(opts, path):
        for name, spec in opts.items():
            assert spec.get("type"), f"{path}{name} has no type"
            assert spec.get("description"), f"{path}{name} has no description"
            walk(spec.get("options", {}), f"{path}{name}.")

    walk(options, "")


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_variables_carry_the_role_prefix(role):
    for name in load(role, "defaults/main.yml"):
        assert name.startswith(f"{role}_"), name
