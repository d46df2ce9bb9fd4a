"""`vllm-server`: one entry point, one sub-command per tool in this package."""

from __future__ import annotations

import argparse
import importlib

# sub-command -> module exposing `add_arguments(parser)` and `run(args) -> int`
_COMMANDS = {
    "standin": "vllm_server.standin",
    "up": "vllm_server.launcher",
    "finetune": "vllm_server.finetune",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vllm-server")
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name, module_path in _COMMANDS.items():
        module = importlib.import_module(module_path)
        modules[name] = module
        module.add_arguments(sub.add_parser(name, help=(module.__doc__ or "").split("\n")[0]))
    args = parser.parse_args(argv)
    return modules[args.command].run(args)


if __name__ == "__main__":
    raise SystemExit(main())
