"""What tracing costs: the all-on gateway (bench/full_pipeline.py) with tracing off, sampling
1% of requests, and sampling every request, side by side in one run.

    .venv/bin/python -m bench.tracing             # about seven minutes
    .venv/bin/python -m bench.tracing --quick     # smoke run

The gateways run at once over the same two stand-ins, beside a second untraced one (the
control: its difference from the first is the comparison's noise floor), and export to an
OTLP/HTTP sink in this process (it decodes each export and counts the spans, so the 100%
figures include a real exporter's work, and the counts prove the spans left). Rounds alternate
the paths
(the order rotating), each round a c=1 latency run then a c=16 throughput run per path; a
comparison with off is the median over the rounds of the paired difference or ratio, which
keeps the shared machine's drift out of it. Targets (issue 20): at 1%, c=1 median latency
within +0.05 ms of off and c=16 req/s at least 97% of off; at 100%, the cost stated.

Writes bench/results/tracing.md and tracing.json; prints PASS/FAIL and exits 1 on a miss.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import shutil
import statistics
import sys
import tempfile
import threading
import time
import timeit
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench import full_pipeline, loadgen, machine
from bench.goals import Goal
from bench.loadgen import plain_load
from bench.measures import PlainResult, tree_cpu_seconds
from bench.phases import BenchSettings
from bench.servers import Target, stop_on_sigterm
from gateway.core.context import RequestContext
from gateway.observability import tracing as tracing_api
from gateway.observability.tracing import Tracing
from gateway.settings import TracingSettings

RESULTS_DIR = Path(__file__).with_name("results")
# path name -> sampling ratio (None: tracing off); "off, control" is a second untraced
# gateway, measured as the others are: how far two identical paths differ here, the noise floor
PATHS: dict[str, float | None] = {"off": None, "off, control": None, "1%": 0.01, "100%": 1.0}
ADDED_LATENCY_LIMIT_MS = 0.05
THROUGHPUT_FLOOR = 0.97
CONCURRENCY = 16
_CACHE_HIT = {"gateway.auth.cache": "hit"}
_HEADERS = [(b"authorization", b"Bearer sk-bench"), (b"content-type", b"application/json")]


@dataclass
class SpanSink:
    """Counts the spans each service exports (OTLP/HTTP protobuf, decoded)."""

    port: int = 0
    spans: dict[str, int] = field(default_factory=dict)
    exports: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        with self._lock:
            self.exports += 1
            for resource_spans in request.resource_spans:
                service = next(
                    (
                        a.value.string_value
                        for a in resource_spans.resource.attributes
                        if a.key == "service.name"
                    ),
                    "",
                )
                count = sum(len(scope.spans) for scope in resource_spans.scope_spans)
                self.spans[service] = self.spans.get(service, 0) + count


@contextmanager
def span_sink() -> Iterator[SpanSink]:
    sink = SpanSink()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            sink.add(self.rfile.read(int(self.headers.get("content-length", 0))))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    sink.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()


def service_name(path: str) -> str:
    return "bench-tracing-" + path.replace("%", "pct").replace(", ", "-")


def tracing_env(path: str, sink: SpanSink) -> dict[str, str]:
    ratio = PATHS[path]
    if ratio is None:
        return {}
    return {
        "VLLM_GATEWAY_TRACING__ENDPOINT": sink.endpoint,
        "VLLM_GATEWAY_TRACING__SAMPLE_RATIO": str(ratio),
        "VLLM_GATEWAY_TRACING__SERVICE_NAME": service_name(path),
    }


@dataclass
class Rounds:
    """Every round's results by path: c=1 latency, c=16 throughput and its CPU seconds."""

    latency: dict[str, list[PlainResult]] = field(default_factory=dict)
    throughput: dict[str, list[PlainResult]] = field(default_factory=dict)
    cpu_s: dict[str, list[float]] = field(default_factory=dict)

    def median_ms(self, path: str) -> float:
        return statistics.median(r.median_ms for r in self.latency[path])

    def added_ms(self, path: str) -> float:
        """The median over the rounds of `path`'s c=1 median minus off's in the same round."""
        pairs = zip(self.latency[path], self.latency["off"], strict=True)
        return statistics.median(ours.median_ms - off.median_ms for ours, off in pairs)

    def share_of_off(self, path: str) -> float:
        """The median over the rounds of `path`'s c=16 req/s over off's in the same round."""
        pairs = zip(self.throughput[path], self.throughput["off"], strict=True)
        return statistics.median(ours.rps / off.rps for ours, off in pairs if off.rps)

    def p99_ms(self, path: str) -> float:
        return statistics.median(r.p99_ms for r in self.latency[path])

    def rps(self, path: str) -> float:
        return statistics.median(r.rps for r in self.throughput[path])

    def _cpu_per_request(self, path: str) -> list[float]:
        pairs = zip(self.cpu_s[path], self.throughput[path], strict=True)
        return [cpu / max(result.requests, 1) for cpu, result in pairs]

    def cpu_per_1k(self, path: str) -> float:
        return statistics.median(self._cpu_per_request(path)) * 1000

    def cpu_share_of_off(self, path: str) -> float:
        """The median over the rounds of `path`'s CPU per request over off's in the same round."""
        pairs = zip(self._cpu_per_request(path), self._cpu_per_request("off"), strict=True)
        return statistics.median(ours / off for ours, off in pairs if off)

    def errors(self, path: str) -> int:
        return sum(r.errors for r in [*self.latency[path], *self.throughput[path]])


def request_path_us(sink: SpanSink, ratio: float, requests: int = 5_000) -> float:
    """Tracing's own work on the request path for one request, timed in this process: the
    calls the gateway makes for a chat request (begin, the key's cache hit, the limits' span,
    the upstream span, the end), at `ratio`, exporting to `sink`; microseconds per request,
    beyond making its RequestContext; the fastest of 5 runs (a shared machine only adds)."""
    tracing = Tracing(TracingSettings(endpoint=sink.endpoint, sample_ratio=ratio))
    asyncio.run(tracing.start())
    scope = {"path": "/v1/chat/completions", "headers": [(b"host", b"gateway"), *_HEADERS]}

    def one() -> None:
        ctx = RequestContext("bench")
        trace = tracing.begin(ctx, scope, "chat.completions")
        tracing_api.event("gateway.auth", _CACHE_HIT)
        with tracing_api.span("gateway.limits"):
            pass
        current = tracing_api.current()
        if current is not None:
            current.upstream_started(ctx)
            current.upstream_answered(200)
            current.upstream_finished(ctx)
        if trace is not None:
            trace.leave()
            ctx.status = 200
            trace.finish(ctx, 0.001)

    def bare() -> None:
        RequestContext("bench")

    try:
        one_s, bare_s = (min(timeit.repeat(f, number=requests, repeat=5)) for f in (one, bare))
    finally:
        asyncio.run(tracing.close())
    return (one_s - bare_s) / requests * 1e6


def measure(targets: dict[str, Target], body: bytes, rounds: int, seconds: int) -> Rounds:
    results = Rounds()
    for name in targets:
        results.latency[name], results.throughput[name], results.cpu_s[name] = [], [], []
    for target in targets.values():  # warm every path up once
        plain_load(target, body, 1, 1)
        plain_load(target, body, CONCURRENCY, 1)
    names = list(targets)
    for round_number in range(1, rounds + 1):
        shift = round_number % len(names)  # each path takes each place in the order in turn
        for name in names[shift:] + names[:shift]:
            target = targets[name]
            print(f"{time.strftime('%H:%M:%S')}  round {round_number}: {name}", flush=True)
            results.latency[name].append(plain_load(target, body, 1, seconds))
            before = tree_cpu_seconds(target.pid)
            results.throughput[name].append(plain_load(target, body, CONCURRENCY, seconds))
            results.cpu_s[name].append(tree_cpu_seconds(target.pid) - before)
    return results


def evaluate(results: Rounds) -> list[Goal]:
    added, share = results.added_ms("1%"), results.share_of_off("1%")
    verdicts = [
        Goal(
            f"1% sampled: c=1 median latency within +{ADDED_LATENCY_LIMIT_MS} ms of off",
            f"{added:+.3f} ms",
            added <= ADDED_LATENCY_LIMIT_MS,
        ),
        Goal(
            f"1% sampled: c={CONCURRENCY} req/s >= {THROUGHPUT_FLOOR:.0%} of off",
            f"{share:.1%}",
            share >= THROUGHPUT_FLOOR,
        ),
    ]
    for name in PATHS:
        failed = results.errors(name)
        verdicts.append(Goal(f"{name}: no failed requests", f"{failed} failed", failed == 0))
    return verdicts


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 s (smoke run)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--seconds", type=int, default=3, help="per measured run")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    rounds, seconds = (2, 2) if args.quick else (args.rounds, args.seconds)
    settings = BenchSettings(  # only the plain body is used: the rest as bench.full sets it
        latency_seconds=seconds,
        throughput_seconds=seconds,
        warmup_seconds=1,
        throughput_concurrency=CONCURRENCY,
        plain_tokens=16,
        streams=0,
        stream_tokens=0,
        stream_seconds=0,
        paced_token_delay_ms=0.0,
        rss_requests=0,
        rss_samples=0,
    )
    stop_on_sigterm()
    context: dict[str, Any] = {
        "command": shlex.join([".venv/bin/python", "-m", "bench.tracing", *argv]),
        "machine": machine.describe(),
        "load_client": loadgen.client_name(),
        "rounds": rounds,
        "measured_seconds": seconds,
        "plain_tokens": settings.plain_tokens,
    }
    workdir = Path(tempfile.mkdtemp(prefix="bench-tracing-"))
    print(f"{time.strftime('%H:%M:%S')}  starting the gateways; logs in {workdir}", flush=True)
    try:
        with ExitStack() as stack:
            sink = stack.enter_context(span_sink())
            first = full_pipeline.standin(workdir, "standin-a", settings.plain_tokens, stack)
            second = full_pipeline.standin(workdir, "standin-b", settings.plain_tokens, stack)
            targets = {}
            for name in PATHS:
                pipeline = stack.enter_context(
                    full_pipeline.running_full(
                        workdir,
                        first.url,
                        second.url,
                        f"gateway-tracing-{service_name(name)}",
                        tracing_env(name, sink),
                    )
                )
                targets[name] = pipeline.target
            results = measure(targets, settings.plain_body(), rounds, seconds)
            context["request_path_us"] = {
                name: request_path_us(sink, ratio) for name, ratio in PATHS.items() if ratio
            }
            time.sleep(6)  # the batch processors' last exports (every 5 s)
            context["spans_received"] = dict(sink.spans)
            context["exports_received"] = sink.exports
    except BaseException:
        print(f"benchmark aborted; logs kept in {workdir}", file=sys.stderr)
        raise
    shutil.rmtree(workdir)
    verdicts = evaluate(results)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "tracing.json").write_text(
        json.dumps(_raw(results, verdicts, context), indent=2) + "\n"
    )
    (args.out_dir / "tracing.md").write_text(_markdown(results, verdicts, context))
    print("\n".join(verdict.line() for verdict in verdicts))
    return 0 if all(verdict.passed for verdict in verdicts) else 1


def _requests(results: Rounds, path: str) -> int:
    return sum(r.requests for r in [*results.latency[path], *results.throughput[path]])


def _raw(results: Rounds, verdicts: list[Goal], context: dict[str, Any]) -> dict[str, Any]:
    paths = {
        name: {
            "sample_ratio": ratio,
            "c1_median_ms": results.median_ms(name),
            "c1_p99_ms": results.p99_ms(name),
            "added_median_ms_vs_off": results.added_ms(name),
            f"rps_c{CONCURRENCY}": results.rps(name),
            "rps_share_of_off": results.share_of_off(name),
            f"cpu_s_per_1k_requests_c{CONCURRENCY}": results.cpu_per_1k(name),
            "requests": _requests(results, name),
            "cpu_per_request_share_of_off": results.cpu_share_of_off(name),
            "request_path_us_in_process": context["request_path_us"].get(name),
            "spans_received": context["spans_received"].get(service_name(name), 0),
            "rounds": {
                "latency_c1": [asdict(r) for r in results.latency[name]],
                f"plain_c{CONCURRENCY}": [asdict(r) for r in results.throughput[name]],
                "cpu_s": results.cpu_s[name],
            },
        }
        for name, ratio in PATHS.items()
    }
    return {**context, "paths": paths, "goals": [asdict(v) for v in verdicts]}


def _markdown(results: Rounds, verdicts: list[Goal], context: dict[str, Any]) -> str:
    m = context["machine"]
    lines = [
        "# Tracing's cost: the all-on gateway with tracing off, 1% and 100% sampled",
        "",
        f"- Date: {m['date']}",
        f"- Command: `{context['command']}`",
        f"- Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, "
        f"Linux {m['kernel']}, Python {m['python']}; load client {context['load_client']}",
        f"- {context['rounds']} rounds alternating the paths (the order rotates), each a "
        f"{context['measured_seconds']} s run at c=1 and one at c={CONCURRENCY} per path; "
        "figures are medians over the rounds, and the comparisons with off the medians of the "
        "rounds' paired differences and ratios (the machine is shared: pairing keeps its "
        f"drift out). Plain chat answers of {context['plain_tokens']} tokens.",
        "- Each gateway: the full pipeline of bench/full_pipeline.py (key auth on a Redis "
        "store, Redis limits, a safety policy, the tenant's model routed to a LoRA adapter over "
        "2 stand-in replicas, metrics, access log). Tracing on: OTLP/HTTP export in a batch to "
        "a sink in the bench process, which decodes every export and counts its spans.",
        "- `off, control`: a second gateway with tracing off, measured as the others are: "
        "what two identical paths differ by on this machine, the noise floor of the "
        "comparisons with `off`.",
        "",
        f"| tracing | c=1 median ms | c=1 p99 ms | added median ms vs off | req/s c={CONCURRENCY} "
        f"| share of off | CPU s/1k req c={CONCURRENCY} | CPU/req vs off | requests "
        "| spans received |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in PATHS:
        lines.append(
            f"| {name} | {results.median_ms(name):.3f} | {results.p99_ms(name):.3f} | "
            f"{results.added_ms(name):+.3f} | "
            f"{results.rps(name):,.0f} | {results.share_of_off(name):.1%} | "
            f"{results.cpu_per_1k(name):.3f} | {results.cpu_share_of_off(name):.1%} | "
            f"{_requests(results, name):,} | "
            f"{context['spans_received'].get(service_name(name), 0):,} |"
        )
    lines += [
        "",
        "Tracing's own work on the request path, timed in the bench process (`request_path_us`:"
        " the calls the gateway makes for one chat request, exporting to the same sink), "
        "microseconds per request: "
        + ", ".join(f"{name} {us:.1f} µs" for name, us in context["request_path_us"].items())
        + ". The exporter's encoding runs in its own thread, outside this figure.",
        "",
        "## Targets",
        "",
        *(f"- {verdict.line()}" for verdict in verdicts),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
