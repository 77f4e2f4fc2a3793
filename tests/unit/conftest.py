"""Make ``ansible_collections.xen.drs`` importable under plain pytest.

ansible-test units already runs from an ``ansible_collections/xen/drs`` tree; plain ``pytest tests/unit``
from a checkout uses the link that scripts/setup makes in .venv/collections.
"""
import pathlib
import sys

try:
    import ansible_collections.xen.drs  # noqa: F401  pylint: disable=unused-import
except ImportError:
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / ".venv" / "collections"))
