"""`jobnode cert`: a development CA and node certificates for TLS."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from jobnode.cli.output import print_json
from jobnode.cli.usage import UsageError


def add_cert_parser(commands: Any) -> None:
    cert = commands.add_parser("cert", help="create a development CA and node certificates for TLS")
    cert.add_argument("--out", required=True, type=Path, help="folder to write into (an existing CA there is reused)")
    cert.add_argument("--nodes", required=True, help="node ids, comma separated: node-1,node-2,node-3")
    cert.add_argument("--hosts", default="", help="more host names or IPs for every certificate, comma separated "
                                                  "(localhost, 127.0.0.1 and ::1 are always in)")
    cert.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the paths as JSON")
    cert.set_defaults(handler=run_cert)


def run_cert(args: argparse.Namespace) -> int:
    # Imported here: only this command needs the certificate tooling.
    from jobnode.dev.certs import write_dev_certs

    nodes = [node.strip() for node in args.nodes.split(",") if node.strip()]
    hosts = [host.strip() for host in args.hosts.split(",") if host.strip()]
    try:
        written = write_dev_certs(args.out, nodes, hosts)
    except (ValueError, OSError) as exc:
        raise UsageError(f"cert: {exc}") from None
    if args.json:
        print_json({"ca_file": str(written.ca_file), "nodes": {
            node: {"cert_file": str(pair.cert_file), "key_file": str(pair.key_file)}
            for node, pair in written.nodes.items()}}, args)
        return 0
    print(f"CA: {written.ca_file} (its key {written.ca_key_file} signs new nodes; keep it private)")
    for node, pair in written.nodes.items():
        print(f"{node}: TLS_ENABLED=true TLS_CERT_FILE={pair.cert_file} TLS_KEY_FILE={pair.key_file} "
              f"TLS_CA_FILE={written.ca_file}")
    print(f"clients: --ca-file {written.ca_file} (or JOBNODE_CA_FILE)")
    return 0
