"""Kernel and initramfs for the lab's tiny guests (stdlib only).

The kernel is Debian's cloud kernel (``linux-image-cloud-amd64``), fetched with ``apt-get download``
and unpacked with ``dpkg -x``; the initramfs holds busybox-static, the virtio modules the guest's disk
needs and ``guest-init.sh`` as ``/init``. Both are cached (default ``<repo>/.venv/lab-cache``), keyed
by the kernel package and the contents of the init script, so only the first lab pays.

    python tests/lab/guest_image.py        # build (or reuse) and print the two paths
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
INIT_SCRIPT = HERE / "guest-init.sh"
DEFAULT_CACHE = HERE.parents[1] / ".venv" / "lab-cache"
META_PACKAGE = "linux-image-cloud-amd64"
BUSYBOX = Path("/bin/busybox")
# Load order matters: each module depends on the ones before it.
MODULES = ("virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev",
           "virtio_pci", "virtio_blk")


class GuestImageError(RuntimeError):
    """The guest kernel or initramfs could not be built."""


def _run(*cmd: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise GuestImageError(f"{' '.join(cmd)} failed (rc={proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def kernel_package() -> str:
    """Name of the versioned kernel package the cloud meta-package points at."""
    try:
        listing = _run("apt-cache", "depends", META_PACKAGE)
    except GuestImageError:  # a machine whose package lists were never fetched
        _run("apt-get", "update", "-qq")
        listing = _run("apt-cache", "depends", META_PACKAGE)
    for line in listing.splitlines():
        dep = line.strip().removeprefix("Depends: ")
        if dep != line.strip() and dep.startswith("linux-image-"):
            return dep
    raise GuestImageError(f"apt-cache depends {META_PACKAGE} names no linux-image package")


def ensure(cache_dir: Path = DEFAULT_CACHE) -> tuple[Path, Path]:
    """Return (kernel, initrd), building them into cache_dir if they are missing or stale."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Asking apt takes seconds: reuse a cached kernel (delete the cache to pick up a newer one).
    cached = sorted(cache_dir.glob("linux-image-*.vmlinuz"))
    package = cached[-1].name.removesuffix(".vmlinuz") if cached else kernel_package()
    key = hashlib.sha256(f"{package} {MODULES}".encode() + INIT_SCRIPT.read_bytes()).hexdigest()[:12]
    kernel, initrd = cache_dir / f"{package}.vmlinuz", cache_dir / f"initrd-{key}.img"
    # Several labs may start at once: one builds, the others wait and reuse.
    with open(cache_dir / ".lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (kernel.exists() and initrd.exists()):
            _build(package, kernel, initrd)
    return kernel, initrd


def _build(package: str, kernel: Path, initrd: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="xdrs-guest-") as tmp:
        work = Path(tmp)
        # apt-get download runs as root; let the _apt sandbox user write here.
        os.chmod(work, 0o777)
        _run("apt-get", "download", "-q", package, cwd=work)
        (deb,) = work.glob("*.deb")
        _run("dpkg", "-x", str(deb), str(work / "pkg"))
        (vmlinuz,) = (work / "pkg" / "boot").glob("vmlinuz-*")
        _atomic_copy(vmlinuz, kernel)

        root = work / "initramfs"
        for sub in ("bin", "dev", "proc", "sys", "lib/modules"):
            (root / sub).mkdir(parents=True)
        shutil.copy2(BUSYBOX, root / "bin" / "busybox")
        os.symlink("busybox", root / "bin" / "sh")  # the interpreter of /init
        shutil.copy2(INIT_SCRIPT, root / "init")
        os.chmod(root / "init", 0o755)
        modules_dir = next((work / "pkg" / "lib" / "modules").iterdir())
        for module in MODULES:
            (found,) = modules_dir.rglob(f"{module}.ko")
            shutil.copy2(found, root / "lib" / "modules" / f"{module}.ko")
        (root / "lib" / "modules" / "load-order").write_text("\n".join(MODULES) + "\n")

        names = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
        cpio = subprocess.run(["cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0"], cwd=root,
                              input=("\n".join(names) + "\n").encode(), capture_output=True,
                              check=False)
        if cpio.returncode != 0:
            raise GuestImageError(f"cpio failed: {cpio.stderr.decode(errors='replace').strip()}")
        packed = work / "initrd.img"
        packed.write_bytes(gzip.compress(cpio.stdout, compresslevel=6))
        _atomic_copy(packed, initrd)


def _atomic_copy(src: Path, dest: Path) -> None:
    part = dest.with_name(dest.name + ".part")
    shutil.copyfile(src, part)
    os.replace(part, dest)


if __name__ == "__main__":
    for path in ensure(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_CACHE):
        print(path)
