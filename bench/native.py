"""A native load generator for the flat-out runs, so the client does not eat the server's CPU.

The Python client (bench/common.py, httpx on asyncio) spends about as much CPU per request
as a bare Django view does to answer it: on a 2-core machine it capped the bare view at
~760 req/s and took that CPU from the server under test. When Debian's `wrk` is installed
(`make bench-tools`), flat-out runs use it: `concurrency` connections sending back to
back, a Lua script setting method, headers and body (a `{SEQ}` placeholder in the body
becomes a run-unique number, so every request carries fresh message ids) and printing
the figures as JSON. Without wrk (or with BENCH_PYTHON_CLIENT=1) the Python client runs.

Fixed-rate runs stay on the Python open-loop client: at 200 requests/s it costs a few
per cent of a core, and wrk has no open-loop mode (wrk2 is not packaged).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

from bench.common import Figures

# A placeholder in a request body that wrk replaces with a number unique to the run.
SEQ = "{SEQ}"

_WRK_SCRIPT = r"""
local body_template = %(body)s
local prefix = ""
local seq = 0
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  prefix = (args[1] or "run") .. "-" .. tostring(tid)
  wrk.method = %(method)s
  %(headers)s
  if body_template ~= nil and not string.find(body_template, "{SEQ}", 1, true) then
    wrk.body = body_template
  end
end

local variants = %(variants)s
local numbered = body_template ~= nil and string.find(body_template, "{SEQ}", 1, true) ~= nil
local n = 0

if numbered or #variants > 0 then
  function request()
    n = n + 1
    local body = body_template
    if numbered then
      body = string.gsub(body_template, "{SEQ}", function()
        seq = seq + 1
        return prefix .. "-" .. tostring(seq)
      end)
    end
    if #variants > 0 then
      local v = variants[(n %% #variants) + 1]
      for key, value in pairs(v[2]) do
        wrk.headers[key] = value
      end
      return wrk.format(nil, v[1], nil, body)
    end
    return wrk.format(nil, nil, nil, body)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\nWRKJSON {"requests": %%d, "duration_us": %%d, "connect": %%d, "read": %%d, "write": %%d, ' ..
    '"status": %%d, "timeout": %%d, "p50_us": %%d, "p99_us": %%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def _lua_string(value: str | None) -> str:
    if value is None:
        return "nil"
    return "[==[" + value + "]==]"


def wrk_path() -> str | None:
    return None if os.environ.get("BENCH_PYTHON_CLIENT") else shutil.which("wrk")


def client_name() -> str:
    flat = "wrk" if wrk_path() else "Python httpx (install wrk: make bench-tools)"
    return f"flat out: {flat}; fixed rate: open loop on raw asyncio streams"


def wrk_flat_out(
    label: str,
    base_url: str,
    path: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: str | None = None,
    concurrency: int,
    seconds: float,
    threads: int = 1,
    run_id: str = "run",
    variants: list[tuple[str, dict[str, str]]] | None = None,
) -> Figures:
    """Closed loop with wrk; `{SEQ}` in the body becomes a run-unique number per occurrence;
    `variants` (path, extra headers) are taken in turn, one per request (many sessions).
    Error count: connection errors plus answers with status >= 400."""
    # A space after "[": "[[" would open a Lua long string.
    header_lines = "\n  ".join(
        f"wrk.headers[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in (headers or {}).items()
    )
    lua_variants = (
        "{"
        + ", ".join(
            "{"
            + _lua_string(p)
            + ", {"
            + ", ".join(f"[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in h.items())
            + "}}"
            for p, h in (variants or [])
        )
        + "}"
    )
    script = _WRK_SCRIPT % {
        "body": _lua_string(body),
        "method": _lua_string(method),
        "headers": header_lines,
        "variants": lua_variants,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
        script_path = handle.name
    try:
        result = subprocess.run(
            [
                wrk_path() or "wrk",
                f"-t{threads}",
                f"-c{concurrency}",
                f"-d{max(1, round(seconds))}s",
                "--timeout=30s",
                "-s",
                script_path,
                base_url + path,
                "--",
                run_id,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        os.unlink(script_path)
    line = next((line for line in result.stdout.splitlines() if line.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no figures:\n{result.stdout}\n{result.stderr}")
    data = json.loads(line[len("WRKJSON ") :])
    errors = data["connect"] + data["read"] + data["write"] + data["status"] + data["timeout"]
    return Figures(
        label,
        data["requests"],
        errors,
        data["duration_us"] / 1e6,
        [],
        percentiles={50: data["p50_us"] / 1000, 99: data["p99_us"] / 1000},
    )


def flat_out_any(
    label: str,
    base_url: str,
    path: str,
    *,
    make,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: str | None = None,
    concurrency: int,
    seconds: float,
    ok: set[int],
    run_id: str = "run",
    variants: list[tuple[str, dict[str, str]]] | None = None,
) -> Figures:
    """wrk when installed, else the Python client with `make` (which must send the same requests)."""
    if wrk_path():
        return wrk_flat_out(
            label,
            base_url,
            path,
            method=method,
            headers=headers,
            body=body,
            concurrency=concurrency,
            seconds=seconds,
            run_id=run_id,
            variants=variants,
        )
    import asyncio

    from bench.common import flat_out

    return asyncio.run(flat_out(label, base_url, make, concurrency=concurrency, seconds=seconds, ok=ok))
