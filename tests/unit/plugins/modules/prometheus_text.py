"""A small parser of the Prometheus text exposition format, enough to check what xen.drs writes.

parse(text) -> {(name, ((label, value), ...)): float}, and the TYPE of each name; raises
AssertionError on a line the format does not allow, a sample without a TYPE line before it, or a
metric whose samples are not together."""

from __future__ import annotations

import re

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')


def _unescape(value):
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), value)


def parse(text):
    assert text.endswith("\n"), "the file must end with a newline"
    samples, types, finished, current = {}, {}, set(), None
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _hash, _type, name, kind = line.split(" ")
            assert name not in types, f"line {number}: second TYPE for {name}"
            types[name] = kind
            continue
        match = SAMPLE.match(line)
        assert match, f"line {number}: not a sample: {line!r}"
        name, labels, value = match.groups()
        assert name in types, f"line {number}: {name} has no TYPE line before it"
        if name != current:
            assert name not in finished, f"line {number}: {name}'s samples are not together"
            if current:
                finished.add(current)
            current = name
        pairs = []
        if labels:
            consumed = "".join(m.group(0) for m in LABEL.finditer(labels))
            assert consumed == labels, f"line {number}: bad labels {labels!r}"
            pairs = [(m.group(1), _unescape(m.group(2))) for m in LABEL.finditer(labels)]
        key = (name, tuple(pairs))
        assert key not in samples, f"line {number}: duplicate sample {key}"
        samples[key] = float(value)
    return samples, types


def value(samples, name, **labels):
    matches = [v for (n, pairs), v in samples.items() if n == name and all(dict(pairs).get(k) == w for k, w in labels.items())]
    assert len(matches) == 1, f"{name} {labels}: {len(matches)} samples"
    return matches[0]
