"""Test certificates made with the `openssl` command line: a CA, a server certificate for
localhost/127.0.0.1 and client certificates, as PEM files (keys in PKCS#8)."""

import subprocess
from pathlib import Path


def _openssl(*args: str, cwd: Path) -> None:
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, timeout=60)
    assert r.returncode == 0, f"openssl {' '.join(args)} failed: {r.stderr.decode(errors='replace')}"


class Pki:
    """A CA, a server certificate and client certificates as PEM files in `dir`."""

    def __init__(self, dir: Path):
        self.dir = dir
        dir.mkdir(parents=True, exist_ok=True)
        self.ca = dir / "ca.pem"
        self.ca_key = dir / "ca.key"
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", str(self.ca_key), "-out", str(self.ca), "-days", "2", "-subj", "/CN=Portico Interop CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=dir)
        self.server_cert, self.server_key = self._issue(
            "server", "/CN=localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
            serial="1001")

    def _issue(self, name: str, subject: str, ext: str, serial: str) -> tuple[Path, Path]:
        key, csr, cert = self.dir / f"{name}.key", self.dir / f"{name}.csr", self.dir / f"{name}.pem"
        extfile = self.dir / f"{name}.ext"
        extfile.write_text(ext)
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key),
                 "-out", str(csr), "-subj", subject, cwd=self.dir)
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(self.ca), "-CAkey", str(self.ca_key),
                 "-set_serial", f"0x{serial}", "-days", "2", "-out", str(cert), "-extfile", str(extfile), cwd=self.dir)
        return cert, key

    def client(self, cn: str, serial: str) -> tuple[Path, Path]:
        return self._issue(f"client-{cn}", f"/O=Portico Interop/CN={cn}", "extendedKeyUsage=clientAuth\n",
                           serial=serial)
