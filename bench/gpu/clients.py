"""The streaming load of the GPU benchmark, sent by vLLM's own `vllm bench serve` where it runs,
else by this project's client (bench/streams.py).

A load is split into lanes, one per tenant: its share of the concurrent streams goes to one
base URL with one model name and one API key. `vllm bench serve` takes one model and one key
per run, so each lane is one run of it, in a process of its own (`add_cli_args` + `main_async`,
which is what `vllm bench serve` calls): one event loop relaying 512 streams' chunks lags by
tens of milliseconds, and that lag would land in every path's TTFT. The lanes' processes are
started once, import vLLM while the server is still starting, and begin each run together at
a barrier; their per-request timings are merged, as if one client had sent it all.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.managers import SyncManager
from typing import Any, Protocol

from bench.measures import percentile

_PERCENTILE_METRICS = "ttft,tpot,itl,e2el"
_PER_REQUEST = {
    "input_lens",
    "output_lens",
    "ttfts",
    "itls",
    "start_times",
    "generated_texts",
    "errors",
}


@dataclass(frozen=True)
class Lane:
    """One share of the streams: where they go, the model they name, the key they carry."""

    base_url: str
    model: str
    api_key: str | None


@dataclass(frozen=True)
class Workload:
    """What one run sends: `concurrency` streams at a time over all lanes, each stream a
    random prompt of `input_len` tokens answered with exactly `output_len` (`ignore_eos`)."""

    concurrency: int
    prompts_per_stream: int
    input_len: int
    output_len: int
    tokenizer: str
    seed: int


@dataclass(frozen=True)
class RunResult:
    """One run over all lanes; percentiles over every successful request (TTFT) and every gap
    between two chunks of a successful request (ITL)."""

    client: str
    requests: int
    failed: int
    output_tokens: int
    duration_s: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    itl_p50_ms: float
    itl_p99_ms: float
    lanes: list[dict[str, Any]] = field(default_factory=list)
    # per request, where the client gives them: its id (x-request-id), when it was sent (wall
    # clock, s) and its TTFT (ms; None when it failed): bench/gpu/timelines.py joins them with
    # the gateway's access log
    timings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def output_tokens_per_s(self) -> float:
        return self.output_tokens / self.duration_s if self.duration_s else 0.0


class LoadClient(Protocol):
    name: str

    def run(self, lanes: Sequence[Lane], workload: Workload) -> RunResult: ...

    def run_paths(
        self, lanes: dict[str, list[Lane]], workload: Workload
    ) -> dict[str, RunResult]: ...


def shares(concurrency: int, lanes: int) -> list[int]:
    """`concurrency` split over `lanes` as evenly as whole streams allow."""
    return [concurrency // lanes + (index < concurrency % lanes) for index in range(lanes)]


class BenchServeClient:
    """`vllm bench serve --backend openai-chat --dataset-name random`, one process per lane."""

    def __init__(self, processes: int = 4) -> None:
        # An ImportError here means "use the other client".
        import vllm.benchmarks.serve  # noqa: F401

        self.name = f"vllm bench serve (vLLM {_vllm_version()})"
        context = multiprocessing.get_context("spawn")
        self._manager: SyncManager = context.Manager()
        self._processes = processes
        self._pool = ProcessPoolExecutor(
            processes, mp_context=context, initializer=_import_bench_serve
        )

    def argv(self, lane: Lane, workload: Workload, streams: int, seed: int) -> list[str]:
        """The `vllm bench serve` arguments of one lane's run (also shown in the report)."""
        argv = [
            "--backend=openai-chat",
            f"--base-url={lane.base_url}",
            "--endpoint=/v1/chat/completions",
            f"--model={lane.model}",
            f"--tokenizer={workload.tokenizer}",
            "--dataset-name=random",
            f"--random-input-len={workload.input_len}",
            f"--random-output-len={workload.output_len}",
            "--ignore-eos",
            f"--num-prompts={streams * workload.prompts_per_stream}",
            f"--max-concurrency={streams}",
            f"--seed={seed}",
            # Unique per run and lane: vLLM takes a request's id from its X-Request-Id header.
            f"--request-id-prefix=gpu-bench-{seed}-",
            "--disable-tqdm",
            f"--percentile-metrics={_PERCENTILE_METRICS}",
            "--metric-percentiles=50,99",
            # Keeps the per-request timings in the returned result; nothing is written.
            "--save-detailed",
        ]
        if lane.api_key:
            argv += ["--header", f"Authorization=Bearer {lane.api_key}"]
        return argv

    def run(self, lanes: Sequence[Lane], workload: Workload) -> RunResult:
        return self.run_paths({"": list(lanes)}, workload)[""]

    def run_paths(self, lanes: dict[str, list[Lane]], workload: Workload) -> dict[str, RunResult]:
        """Every path's lanes at once, `workload.concurrency` streams per path (split evenly
        over its lanes), one result per path: the paths share the server's every moment."""
        streams = [
            (path, lane, count)
            for path, path_lanes in lanes.items()
            for lane, count in zip(
                path_lanes, shares(workload.concurrency, len(path_lanes)), strict=True
            )
        ]
        if len(streams) > self._processes:
            raise ValueError(f"{len(streams)} lanes, but {self._processes} client processes")
        runs = [
            (path, self.argv(lane, workload, count, workload.seed + index))
            for index, (path, lane, count) in enumerate(streams)
        ]
        barrier = self._manager.Barrier(len(runs))
        futures = [self._pool.submit(_run_lane, argv, barrier) for _, argv in runs]
        results = [future.result() for future in futures]
        prefixes = [_request_id_prefix(argv) for _, argv in runs]
        return {
            path: self._merged(
                [
                    (prefix, result)
                    for (of, _), prefix, result in zip(runs, prefixes, results, strict=True)
                    if of == path
                ]
            )
            for path in lanes
        }

    def _merged(self, lane_results: list[tuple[str, dict[str, Any]]]) -> RunResult:
        results = [result for _, result in lane_results]
        ttfts, gaps, output_tokens, starts, ends = [], [], 0, [], []
        timings = [
            {
                # `vllm bench serve` numbers its requests in order, after the prefix
                "id": f"{prefix}{index}",
                "sent_s": start,
                "ttft_ms": ttft * 1e3 if ttft > 0 else None,
            }
            for prefix, result in lane_results
            for index, (start, ttft) in enumerate(
                zip(result["start_times"], result["ttfts"], strict=True)
            )
        ]
        for result in results:
            # A request that failed, or got no chunk, has a TTFT of 0 and no gaps.
            for ttft, itl, tokens in zip(
                result["ttfts"], result["itls"], result["output_lens"], strict=True
            ):
                if ttft > 0:
                    ttfts.append(ttft)
                    gaps.extend(itl)
                    output_tokens += tokens
            # Each lane's duration runs from its first request's start to its last end.
            starts.append(min(result["start_times"]))
            ends.append(starts[-1] + result["duration"])
        return RunResult(
            client=self.name,
            requests=sum(result["completed"] for result in results),
            failed=sum(result["failed"] for result in results),
            output_tokens=output_tokens,
            duration_s=max(ends) - min(starts),
            ttft_p50_ms=percentile(ttfts, 50) * 1e3,
            ttft_p99_ms=percentile(ttfts, 99) * 1e3,
            itl_p50_ms=percentile(gaps, 50) * 1e3,
            itl_p99_ms=percentile(gaps, 99) * 1e3,
            lanes=[_summary(result) for result in results],
            timings=timings,
        )


def _import_bench_serve() -> None:
    """Each client process imports vLLM once, before its first run."""
    from vllm.benchmarks import serve  # noqa: F401


def _run_lane(argv: list[str], barrier: Any) -> dict[str, Any]:
    """One lane's run in a client process, begun when every lane's process is ready; its
    `start_times` turned from this process's perf_counter() into the wall clock of the logs."""
    from vllm.benchmarks import serve
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser()
    serve.add_cli_args(parser)
    args = parser.parse_args(argv)
    barrier.wait()
    result: dict[str, Any] = asyncio.run(serve.main_async(args))
    wall_offset = time.time() - time.perf_counter()
    result["start_times"] = [start + wall_offset for start in result["start_times"]]
    return result


class StreamsClient:
    """bench/streams.py: workers keep their streams open for `seconds`, the same fixed prompt
    on every stream (vLLM's prefix cache then serves its prefill on both paths alike)."""

    name = "bench/streams.py (aiohttp)"

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds

    def run(self, lanes: Sequence[Lane], workload: Workload) -> RunResult:
        return self.run_paths({"": list(lanes)}, workload)[""]

    def run_paths(self, lanes: dict[str, list[Lane]], workload: Workload) -> dict[str, RunResult]:
        """Each path's streams from a thread of its own, all started together."""
        with ThreadPoolExecutor(len(lanes)) as pool:
            futures = {
                path: pool.submit(self._run_path, path_lanes, workload)
                for path, path_lanes in lanes.items()
            }
            return {path: future.result() for path, future in futures.items()}

    def _run_path(self, lanes: Sequence[Lane], workload: Workload) -> RunResult:
        from bench import streams
        from bench.servers import Target

        stream_lanes = [
            (Target(lane.model, lane.base_url, _authorization(lane), 0), _chat_body(lane, workload))
            for lane in lanes
        ]
        result = streams.run_lanes(stream_lanes, workload.concurrency, self._seconds)
        completed = result.streams - result.incomplete
        return RunResult(
            client=self.name,
            requests=completed,
            failed=result.incomplete,
            output_tokens=completed * workload.output_len,
            duration_s=result.duration_s,
            ttft_p50_ms=result.ttft_median_ms,
            ttft_p99_ms=result.ttft_p99_ms,
            itl_p50_ms=result.itl_median_ms,
            itl_p99_ms=result.itl_p99_ms,
        )


def _request_id_prefix(argv: list[str]) -> str:
    return next(item.split("=", 1)[1] for item in argv if item.startswith("--request-id-prefix="))


def _authorization(lane: Lane) -> str | None:
    return f"Bearer {lane.api_key}" if lane.api_key else None


def _chat_body(lane: Lane, workload: Workload) -> bytes:
    # About one token per word with the benchmark's tokenizer.
    prompt = " ".join(["gateway"] * workload.input_len)
    return json.dumps(
        {
            "model": lane.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": workload.output_len,
            "ignore_eos": True,
            "stream": True,
        }
    ).encode()


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    """`vllm bench serve`'s own result for one lane, without its per-request lists."""
    summary = {key: value for key, value in result.items() if key not in _PER_REQUEST}
    errors = [error for error in result.get("errors", []) if error]
    if errors:
        summary["first_errors"] = errors[:3]
    return summary


def _vllm_version() -> str:
    import vllm

    return vllm.__version__
