#!/usr/bin/env python3
"""An external Fabric worker in Python, standard library only.

It claims jobs of the kinds it serves over the daemon's API, keeps each lease alive with
heartbeats while the job runs, and completes or fails it with the lease token it got. A
worker killed mid-job simply stops heartbeating: its lease lapses, the daemon rescues the
job, and another worker runs it.

    FABRIC_TOKEN=... python3 examples/python_worker.py --url http://127.0.0.1:9100 \
        --worker py-1 --kinds record

Kinds it knows (add your own to HANDLERS):
  record  payload {"path": FILE, "ms": N}: writes "start <id> <attempt> <worker>" to FILE,
          sleeps N ms, then appends "<id> <attempt> <worker>" and returns {"worker": ...}.
  pyrecord  the same, under a kind no built-in handler serves (what the tests declare external).
  echo    returns the payload as the result.
"""

import argparse
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request


class Conflict(Exception):
    """The daemon answered 409: this lease is no longer ours."""


class Api:
    def __init__(self, url, token):
        self.url = url.rstrip("/")
        self.token = token

    def post(self, path, body, timeout=75):
        req = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            headers={
                "Content-Type": "application/json",
                "Authorization": "Bearer " + self.token,
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")
            if e.code == 409:
                raise Conflict(detail) from None
            raise RuntimeError(f"{path}: HTTP {e.code}: {detail}") from None


def record(job, worker):
    payload = job["payload"]
    path = payload["path"]
    with open(path, "a") as f:
        f.write(f"start {job['id']} {job['attempt']} {worker}\n")
        f.flush()
        os.fsync(f.fileno())
    time.sleep(payload.get("ms", 0) / 1000.0)
    with open(path, "a") as f:
        f.write(f"{job['id']} {job['attempt']} {worker}\n")
        f.flush()
        os.fsync(f.fileno())
    return {"worker": worker}


def echo(job, worker):
    return job["payload"]


HANDLERS = {"record": record, "pyrecord": record, "echo": echo}


def heartbeat_until(api, job, lease_seconds, done):
    """Extends the lease every third of it until `done` is set or the lease is lost."""
    while not done.wait(max(lease_seconds / 3.0, 0.2)):
        try:
            api.post(
                "/api/v1/workers/heartbeat",
                {"id": job["id"], "token": job["token"], "lease_seconds": lease_seconds},
            )
        except Conflict:
            print(f"job {job['id']}: lease lost", file=sys.stderr)
            return
        except Exception as e:  # the daemon is away: try again at the next beat
            print(f"job {job['id']}: heartbeat failed: {e}", file=sys.stderr)


def run_one(api, job, worker, lease_seconds):
    done = threading.Event()
    beat = threading.Thread(
        target=heartbeat_until, args=(api, job, lease_seconds, done), daemon=True
    )
    beat.start()
    try:
        handler = HANDLERS.get(job["kind"])
        if handler is None:
            api.post(
                "/api/v1/workers/fail",
                {
                    "id": job["id"],
                    "token": job["token"],
                    "error": f"this worker has no handler for kind {job['kind']!r}",
                    "failure_type": "permanent",
                },
            )
            return
        try:
            result = handler(job, worker)
        except Exception as e:
            api.post(
                "/api/v1/workers/fail",
                {"id": job["id"], "token": job["token"], "error": str(e), "failure_type": "transient"},
            )
            return
        api.post(
            "/api/v1/workers/complete",
            {"id": job["id"], "token": job["token"], "result": result},
        )
    except Conflict as e:
        print(f"job {job['id']}: not ours any more: {e}", file=sys.stderr)
    finally:
        done.set()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default=os.environ.get("FABRIC_URL", "http://127.0.0.1:9100"))
    p.add_argument("--worker", default=f"py-{os.getpid()}")
    p.add_argument("--kinds", default="record,echo", help="comma-separated")
    p.add_argument("--max", type=int, default=1, help="jobs per claim")
    p.add_argument("--lease-seconds", type=int, default=30)
    p.add_argument("--wait-seconds", type=int, default=20, help="long-poll of a claim")
    p.add_argument("--once", action="store_true", help="exit when a claim finds nothing")
    args = p.parse_args()
    token = os.environ.get("FABRIC_TOKEN")
    if not token:
        sys.exit("set FABRIC_TOKEN to a token of the daemon (api.token)")
    api = Api(args.url, token)
    kinds = [k for k in args.kinds.split(",") if k]
    while True:
        try:
            got = api.post(
                "/api/v1/workers/claim",
                {
                    "worker": args.worker,
                    "kinds": kinds,
                    "max": args.max,
                    "lease_seconds": args.lease_seconds,
                    "wait_seconds": 0 if args.once else args.wait_seconds,
                },
            )
        except Exception as e:
            print(f"claim failed: {e}", file=sys.stderr)
            time.sleep(1)
            continue
        jobs = got["jobs"]
        if not jobs and args.once:
            return
        for job in jobs:
            run_one(api, job, args.worker, args.lease_seconds)


if __name__ == "__main__":
    main()
