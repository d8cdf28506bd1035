"""A development certificate authority and per-node certificates (`jobnode cert`).

`write_dev_certs(out_dir, nodes, hosts)` writes, under out_dir:

    ca.pem, ca-key.pem                 the CA (reused when already there, so nodes can be added later)
    <node>/cert.pem, <node>/key.pem    one certificate per node, signed by the CA

Each node certificate names the node's id, `localhost`, 127.0.0.1, ::1 and every extra host
given (DNS names or IP addresses) as subject alternative names, and is good for both server
and client authentication, so the same pair serves the API and proves the node to its peers
(mutual TLS). Keys are ECDSA P-256 and are written readable by their owner only.

This is for development and tests: a production cluster gets its certificates from the
operator's own CA. Nothing here is downloaded or registered anywhere.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from jobnode.core.settings import NODE_ID_PATTERN, NODE_ID_URI_PREFIX

CA_DAYS = 3650
NODE_DAYS = 825  # the longest validity common TLS clients accept for a leaf certificate
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
CA_NAME = "jobnode development CA"


@dataclass(frozen=True)
class NodeCert:
    """Where one node's certificate and private key were written."""

    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class DevCerts:
    """Everything `write_dev_certs` wrote: the CA (TLS_CA_FILE) and each node's pair."""

    ca_file: Path
    ca_key_file: Path
    nodes: dict[str, NodeCert]


def write_dev_certs(out_dir: Path, nodes: list[str], hosts: list[str] | tuple[str, ...] = ()) -> DevCerts:
    """Create (or reuse) the CA in out_dir and write a fresh certificate for every node."""
    bad = [node for node in nodes if not NODE_ID_PATTERN.fullmatch(node)]
    if bad or not nodes:
        raise ValueError(f"node ids must be 1-63 letters, digits, '.', '_' or '-'; got {bad or nodes!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ca_file, ca_key_file = out_dir / "ca.pem", out_dir / "ca-key.pem"
    if ca_file.is_file() and ca_key_file.is_file():
        ca_cert, ca_key = _load_ca(ca_file, ca_key_file)
    else:
        ca_cert, ca_key = _new_ca()
        _write_key(ca_key_file, ca_key)
        ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    written = {}
    for node in nodes:
        node_dir = out_dir / node
        node_dir.mkdir(exist_ok=True)
        cert, key = _new_node_cert(node, [*DEFAULT_HOSTS, *hosts], ca_cert, ca_key)
        pair = NodeCert(node_dir / "cert.pem", node_dir / "key.pem")
        _write_key(pair.key_file, key)
        pair.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        written[node] = pair
    return DevCerts(ca_file, ca_key_file, written)


def _now() -> datetime.datetime:
    # Backdated a little so a host whose clock lags a few minutes still accepts a fresh certificate.
    return datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)


def _new_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now()).not_valid_after(_now() + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _new_node_cert(node: str, hosts: list[str], ca_cert: x509.Certificate,
                   ca_key: ec.EllipticCurvePrivateKey) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node)]))
        .issuer_name(ca_cert.subject).public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now()).not_valid_after(_now() + datetime.timedelta(days=NODE_DAYS))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"{NODE_ID_URI_PREFIX}{node}"),
                                                    *_alt_names([node, *hosts])]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, key_cert_sign=False,
                                     crl_sign=False, content_commitment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _alt_names(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(h.strip().strip("[]") for h in hosts if h.strip()):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _load_ca(ca_file: Path, ca_key_file: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(ca_file.read_bytes())
    key = serialization.load_pem_private_key(ca_key_file.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise ValueError(f"{ca_key_file} is not the key of {ca_file}; remove both to start a new CA")
    return cert, key


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    # Created owner-only from the start: never a moment where another user could read it.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    os.chmod(path, 0o600)
