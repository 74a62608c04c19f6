#!/usr/bin/env python3
"""The comparison baseline: a "new value" rule of the kind SIEMs ship.

Per identity, after a warm-up of WARMUP_DAYS from its first event, alert whenever a call uses a
source IP, an API action or a user agent that identity has never used before. Reads a fleet
written by `driftwatch simulate` and writes minimal OCSF alerts that `driftwatch evaluate` scores.

Usage: scripts/new_value_rule.py FLEET_DIR OUT_ALERTS_JSONL [WARMUP_DAYS]
"""
import json
import sys
from datetime import datetime


def ms(ts):
    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)


def events(fleet):
    for line in open(f"{fleet}/cloudtrail.jsonl"):
        r = json.loads(line)
        ui = r["userIdentity"]
        key = ui.get("sessionContext", {}).get("sessionIssuer", {}).get("arn") or ui.get("arn")
        yield ms(r["eventTime"]), key, r["sourceIPAddress"], r["eventSource"] + ":" + r["eventName"], r.get("userAgent")
    for line in open(f"{fleet}/k8s-audit.jsonl"):
        r = json.loads(line)
        action = r["verb"] + ":" + r["objectRef"]["resource"]
        yield ms(r["requestReceivedTimestamp"]), r["user"]["username"], r["sourceIPs"][0], action, r.get("userAgent")


def main():
    fleet, out = sys.argv[1], sys.argv[2]
    warmup_ms = float(sys.argv[3] if len(sys.argv) > 3 else 7) * 86_400_000
    first, seen = {}, {}
    with open(out, "w") as w:
        for t, key, ip, action, ua in sorted(events(fleet)):
            first.setdefault(key, t)
            known = seen.setdefault(key, set())
            new = [v for v in (("ip", ip), ("action", action), ("ua", ua)) if v not in known]
            known.update(new)
            if new and t >= first[key] + warmup_ms:
                w.write(json.dumps({"class_uid": 2004, "time": t, "resources": [{"uid": key}],
                                    "finding_info": {"types": ["new_" + k for k, _ in new]}}) + "\n")


if __name__ == "__main__":
    main()
