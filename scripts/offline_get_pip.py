"""Write a stand-in for the get-pip script that ansible-test downloads.

ansible-test (2.19) runs ~/.ansible/test/cache/get_pip_<version>.py, when it exists, as
``python SCRIPT --disable-pip-version-check pip==X [--no-setuptools] [--no-wheel]``.
The stand-in puts the pip wheel bundled with ``ensurepip`` on sys.path and runs
``pip install`` with the same arguments (minus get-pip's own ``--no-*`` flags).
"""
import pathlib
import sys

STAND_IN = '''\
# Written by xen.drs scripts/offline_get_pip.py: an offline stand-in for get-pip.
import glob, os, sys, ensurepip
wheels = glob.glob(os.path.join(os.path.dirname(ensurepip.__file__), "_bundled", "pip-*.whl"))
sys.path.insert(0, wheels[0])
from pip._internal.cli.main import main
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install"] + args))
'''

# ansible-test asks for the pip version it pins; cover the ones 2.19 has used.
VERSIONS = ("24_2", "24_3", "25_0", "25_1", "25_2", "25_3")


def main():
    cache = pathlib.Path.home() / ".ansible" / "test" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    for version in VERSIONS:
        (cache / f"get_pip_{version}.py").write_text(STAND_IN)
    return 0


if __name__ == "__main__" and sys.argv[1:] == ["install"]:
    sys.exit(main())
