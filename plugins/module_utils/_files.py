# -*- coding: utf-8 -*-
# Copyright: xen.drs contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Directories the xen.drs modules create (state, lock and report directories), with their modes.

Kept apart from _state so that run_lock, which releases the lock on every hypervisor at the end of every
run, ships and imports only this much of it (_state and its dataclasses cost it about 7% of its time).
"""

from __future__ import annotations

import errno
import os


def make_directories(directory, mode):
    """Create ``directory`` and every missing parent with exactly ``mode`` (whatever the umask: os.makedirs
    gives new parents 0777 less the umask, often world-readable 0755); existing directories keep theirs.
    Returns whether ``directory`` itself was created."""
    directory = target = os.path.abspath(directory)
    missing = []
    while not os.path.lexists(directory):  # up to the first that exists (mkdir under a file: Not a directory)
        missing.append(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    created = False
    for path in reversed(missing):  # the outermost first
        try:
            os.mkdir(path, mode)
        except FileExistsError:  # another run created it at the same moment: it set its mode
            if not os.path.isdir(path):
                raise
            created = False
            continue
        os.chmod(path, mode)  # exact, whatever the umask
        created = True
    if not os.path.isdir(target):  # it is there, but not a directory (as os.makedirs says)
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), target)
    return created
