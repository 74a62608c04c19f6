#!/usr/bin/env python3
"""Writes the JSON Schema of one OCSF event class, as the official schema defines it.

Input: the OCSF schema compiled into its export form (one JSON document of classes, objects,
types and profiles) by the OCSF project's own compiler, from the ocsf-schema repository at a
release tag. To regenerate schemas/ocsf-1.1.0/detection_finding.schema.json:

    git clone --branch v1.1.0 https://github.com/ocsf/ocsf-schema /tmp/ocsf-schema
    python3 -m venv /tmp/ocsf && /tmp/ocsf/bin/pip install ocsf-lib==0.10.4
    /tmp/ocsf/bin/python -m ocsf.compile /tmp/ocsf-schema > /tmp/ocsf-1.1.0.json
    scripts/ocsf_schema.py /tmp/ocsf-1.1.0.json /tmp/ocsf-schema detection_finding cloud \\
        > schemas/ocsf-1.1.0/detection_finding.schema.json

What the schema checks, as the OCSF validator does: every attribute is one the class or object
defines (no others: extra data belongs in `unmapped`), of its type (scalar types reduced to their
JSON type), arrays where the schema says so, `required` attributes present, the values of
enumerated integer attributes (`*_id`) among those defined, and the objects' `at_least_one` /
`just_one` constraints (read from the schema's own text: an object's nearest definition along
its `extends` chain, since the compiled export carries the base object's instead). Attributes that a profile adds (here: the profiles named on the command
line) are allowed only when the event lists that profile in `metadata.profiles`; the event is
checked against the class with exactly the profiles it declares among those named.
"""

import glob
import itertools
import json
import os
import sys

SCALAR = {
    "boolean_t": {"type": "boolean"},
    "float_t": {"type": "number"},
    "integer_t": {"type": "integer"},
    "long_t": {"type": "integer"},
    "json_t": {},
    "object": {"type": "object"},
}


def scalar(types, name):
    """The JSON Schema of a scalar OCSF type, following its base type."""
    seen = set()
    while name not in SCALAR and name in types and name not in seen:
        seen.add(name)
        base = types[name].get("type")
        if not base:
            break
        name = base
    return dict(SCALAR.get(name, {"type": "string"}))


def source_constraints(repo):
    """Each object's constraints as its own file (or the nearest it extends) defines them."""
    files = {}
    for path in glob.glob(os.path.join(repo, "objects", "*.json")):
        o = json.load(open(path))
        files[o["name"]] = o
    out = {}
    for name in files:
        at, seen = name, set()
        while at in files and at not in seen:
            seen.add(at)
            if "constraints" in files[at]:
                out[name] = files[at]["constraints"]
                break
            at = files[at].get("extends")
    return out


def main():
    if len(sys.argv) < 4:
        sys.exit("Usage: scripts/ocsf_schema.py COMPILED_EXPORT.json SCHEMA_REPO CLASS [PROFILE...]")
    export = json.load(open(sys.argv[1]))
    constraints = source_constraints(sys.argv[2])
    cls_name, profiles = sys.argv[3], sys.argv[4:]
    cls = export["classes"][cls_name]
    objects, types = export["objects"], export["types"]
    unknown = [p for p in profiles if p not in cls.get("profiles", [])]
    if unknown:
        sys.exit(f"{cls_name} does not take profile(s) {unknown}")

    defs = {}

    def variant(chosen):
        return "+".join(sorted(chosen)) or "none"

    def attrs_schema(attributes, constraints, chosen, what):
        props, required = {}, []
        for name, a in sorted(attributes.items()):
            if a.get("profile") and a["profile"] not in chosen:
                continue
            t = a["type"]
            if t == "object":
                # OCSF's generic object: any attributes.
                item = {"type": "object"}
            elif t in objects:
                item = {"$ref": f"#/$defs/{variant(chosen)}/{t}"}
                want(t, chosen)
            else:
                item = scalar(types, t)
                if a.get("enum") and item.get("type") == "integer":
                    item["enum"] = sorted(int(k) for k in a["enum"])
            if a.get("is_array"):
                item = {"type": "array", "items": item}
            props[name] = item
            if a.get("requirement") == "required":
                required.append(name)
        s = {
            "type": "object",
            "description": what,
            "properties": props,
            "additionalProperties": False,
        }
        if required:
            s["required"] = required
        for kind, names in (constraints or {}).items():
            names = [n for n in names if n in props]
            if not names:
                continue
            options = [{"required": [n]} for n in names]
            if kind == "at_least_one":
                s["anyOf"] = options
            elif kind == "just_one":
                s["oneOf"] = options
            else:
                sys.exit(f"unknown constraint {kind} in {what}")
        return s

    pending = []

    def want(obj, chosen):
        key = (variant(chosen), obj)
        if key not in seen:
            seen.add(key)
            pending.append((obj, chosen))

    seen = set()
    variants = {}
    for n in range(len(profiles) + 1):
        for chosen in itertools.combinations(sorted(profiles), n):
            chosen = set(chosen)
            v = variant(chosen)
            class_schema = attrs_schema(
                cls["attributes"], cls.get("constraints"), chosen,
                f"OCSF {export['version']} {cls['caption']} with profiles: {v}",
            )
            if chosen:
                class_schema["properties"]["metadata"] = {
                    "allOf": [
                        class_schema["properties"]["metadata"],
                        {
                            "required": ["profiles"],
                            "properties": {
                                "profiles": {
                                    "allOf": [{"contains": {"const": p}} for p in sorted(chosen)]
                                }
                            },
                        },
                    ]
                }
            variants[v] = (chosen, class_schema)
            while pending:
                obj, ch = pending.pop()
                o = objects[obj]
                defs.setdefault(variant(ch), {})[obj] = attrs_schema(
                    o["attributes"], constraints.get(obj), ch, f"OCSF object {o['caption']}"
                )

    # An event declaring a profile (of those named) is checked with it; one that does not,
    # without it. Profiles declared but not named here are not checked.
    def declares(p):
        return {
            "properties": {"metadata": {"properties": {"profiles": {"contains": {"const": p}}}, "required": ["profiles"]}},
            "required": ["metadata"],
        }

    options = []
    for v, (chosen, s) in sorted(variants.items()):
        conds = [declares(p) if p in chosen else {"not": declares(p)} for p in sorted(profiles)]
        options.append({"if": {"allOf": conds} if conds else {}, "then": {"$ref": f"#/$defs/class/{v}"}})
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://schema.ocsf.io/{export['version']}/classes/{cls_name}.schema.json",
        "title": f"OCSF {export['version']} {cls['caption']} (class_uid {cls.get('uid')})",
        "description": (
            f"Generated by driftwatch's scripts/ocsf_schema.py from the Open Cybersecurity Schema "
            f"Framework {export['version']} (https://github.com/ocsf/ocsf-schema, Apache License 2.0; "
            f"see NOTICE beside this file), profiles checked: {', '.join(profiles) or 'none'}."
        ),
        "allOf": options,
        "$defs": {"class": {v: s for v, (_, s) in variants.items()}, **defs},
    }
    json.dump(schema, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
