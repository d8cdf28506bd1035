"""`jobnode types`: every job type the cluster runs, with its queue, its nodes and its payload schema."""

from __future__ import annotations

import argparse
import json
from typing import Any

from jobnode.cli.connection import client_command
from jobnode.client import AsyncClient


def add_types_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    types = commands.add_parser("types", parents=[common], help="job types in the cluster: queue, nodes, schema",
                                description="List every job type the cluster's nodes declare.")
    types.add_argument("--schemas", action="store_true", help="print each type's payload JSON Schema too")
    types.set_defaults(handler=client_command(run_types))


async def run_types(client: AsyncClient, args: argparse.Namespace) -> int:
    rows = await client.types()
    if args.json:
        print(json.dumps(rows))
        return 0
    width = max([len("type"), *(len(row["type"]) for row in rows)])
    print(f"{'type':<{width}}  {'queue':<12}  {'schema':<6}  nodes")
    for row in rows:
        nodes = ", ".join(row["nodes"]) or "(none running it now)"
        schema = "yes" if row["payload_schema"] is not None else "-"
        print(f"{row['type']:<{width}}  {row['queue']:<12}  {schema:<6}  {nodes}")
        summary = (row["doc"] or "").strip().splitlines()
        if summary:
            print(f"{'':<{width}}  {summary[0]}")
        if args.schemas and row["payload_schema"] is not None:
            print(json.dumps(row["payload_schema"], indent=2))
    return 0
