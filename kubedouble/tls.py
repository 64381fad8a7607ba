"""The double's certificate authority and serving certificate, as a K3s server has its own.

kubectl sends a bearer token only over TLS, and a client verifies the server against the CA in
its kubeconfig. Each double issues a fresh CA and a serving certificate for the address it
listens on (plus ``localhost`` and the in-cluster names ``kubernetes.default.svc``), keeps them
in a private temporary folder for uvicorn, and hands the CA to the kubeconfigs it writes.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

IN_CLUSTER_NAMES = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                    "kubernetes.default.svc.cluster.local")


@dataclass
class ServingCerts:
    folder: Path
    ca_pem: bytes

    @property
    def certfile(self) -> str:
        return str(self.folder / "serving.crt")

    @property
    def keyfile(self) -> str:
        return str(self.folder / "serving.key")

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def issue(host: str) -> ServingCerts:
    """A new CA and a certificate for ``host`` signed by it, written to a 0700 folder."""
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=365)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("kubedouble-server-ca")).issuer_name(_name("kubedouble-server-ca"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    ips = {"127.0.0.1"}
    names = set(IN_CLUSTER_NAMES)
    try:
        ips.add(str(ipaddress.ip_address(host)))
    except ValueError:
        names.add(host)
    sans = [x509.DNSName(n) for n in sorted(names)] + [x509.IPAddress(ipaddress.ip_address(i)) for i in sorted(ips)]
    cert = (x509.CertificateBuilder().subject_name(_name("kube-apiserver")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    folder = Path(tempfile.mkdtemp(prefix="kubedouble-tls-"))
    os.chmod(folder, 0o700)
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    (folder / "serving.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(folder / "serving.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(_pem(key))
    (folder / "ca.crt").write_bytes(ca_pem)
    return ServingCerts(folder, ca_pem)
