"""Throwaway PKI for the simulator's TLS Admin API (Kong's ``admin_listen ... ssl``), made with ``cryptography``.

``make_pki(directory, hosts)`` writes a CA, a server certificate for the Admin listener (SAN = the listen
addresses and ``localhost``) and a client certificate signed by the same CA, for a mutual-TLS Admin API:

    <directory>/ca.crt          the CA (give it to a client as ca_path)
    <directory>/admin.crt/.key  the Admin listener's certificate and key
    <directory>/client.crt/.key a client certificate and key (client_cert / client_key)

Keys are written with mode 0600. Nothing here is meant to outlive the lab that made it (valid 7 days).
"""

import datetime
import ipaddress
import os
import ssl

MODES = ("off", "on", "mutual")


class TlsError(RuntimeError):
    """The PKI could not be made or loaded; the message says why and what to do."""


def _load_crypto():
    try:
        # pylint: disable=import-outside-toplevel
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError as exc:
        raise TlsError("kong.tls needs the Python package 'cryptography' in the lab's virtual environment "
                       "(it comes with ansible-core): pip install cryptography (%s)" % exc) from None
    return x509, hashes, serialization, ec, ExtendedKeyUsageOID, NameOID


def _write(path, data, private=False):
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(path + ".tmp", path)


def make_pki(directory, hosts=("127.0.0.1",)):
    """Create the CA, the server and the client certificate in ``directory``; returns a dict of their paths."""
    x509, hashes, serialization, ec, eku, name_oid = _load_crypto()
    os.makedirs(directory, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    until = now + datetime.timedelta(days=7)

    def pem_key(key):
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    def name(common):
        return x509.Name([x509.NameAttribute(name_oid.ORGANIZATION_NAME, "mixedrun lab"), x509.NameAttribute(name_oid.COMMON_NAME, common)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("mixedrun-lab-kong-ca")
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(until)
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False, key_agreement=False,
                                            encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
               .sign(ca_key, hashes.SHA256()))

    def leaf(common, usage, sans=None):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(name(common)).issuer_name(ca_name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(until)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return key, builder.sign(ca_key, hashes.SHA256())

    sans = [x509.DNSName("localhost")]
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    server_key, server_cert = leaf("mixedrun-lab-kong-admin", eku.SERVER_AUTH, sans)
    client_key, client_cert = leaf("mixedrun-lab-client", eku.CLIENT_AUTH)

    paths = {"ca": os.path.join(directory, "ca.crt"),
             "cert": os.path.join(directory, "admin.crt"), "key": os.path.join(directory, "admin.key"),
             "client_cert": os.path.join(directory, "client.crt"), "client_key": os.path.join(directory, "client.key")}
    _write(paths["ca"], ca_cert.public_bytes(serialization.Encoding.PEM))
    _write(paths["cert"], server_cert.public_bytes(serialization.Encoding.PEM))
    _write(paths["key"], pem_key(server_key), private=True)
    _write(paths["client_cert"], client_cert.public_bytes(serialization.Encoding.PEM))
    _write(paths["client_key"], pem_key(client_key), private=True)
    return paths


def server_context(cert, key, client_ca=None):
    """An SSLContext for the Admin listener.

    With ``client_ca`` a client certificate is asked for and, when given, must be signed by that CA. Like nginx's
    ``ssl_verify_client on`` (how Kong does mutual TLS), a client that sends none still completes the handshake and
    is answered HTTP 400 "No required SSL certificate was sent" (``missing_client_cert_response``).
    """
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
        if client_ca:
            ctx.load_verify_locations(client_ca)
            ctx.verify_mode = ssl.CERT_OPTIONAL
    except (OSError, ssl.SSLError) as exc:
        raise TlsError("cannot load the Admin API TLS files (%s, %s, client CA %s): %s" % (cert, key, client_ca, exc)) from None
    return ctx


NO_CLIENT_CERT_PAGE = ("<html>\r\n<head><title>400 No required SSL certificate was sent</title></head>\r\n<body>\r\n"
                       "<center><h1>400 Bad Request</h1></center>\r\n<center>No required SSL certificate was sent</center>\r\n"
                       "<hr><center>openresty</center>\r\n</body>\r\n</html>\r\n")


def has_client_cert(request):
    """True when the TLS peer of an aiohttp request presented a (verified) certificate."""
    transport = request.transport
    return bool(transport is not None and transport.get_extra_info("peercert"))


def client_kwargs(info):
    """``requests`` keyword arguments (verify, cert) for a pidfile / lab.json dict that may describe a TLS Admin API."""
    out = {}
    if info.get("ca_path"):
        out["verify"] = info["ca_path"]
    if info.get("client_cert"):
        out["cert"] = (info["client_cert"], info["client_key"]) if info.get("client_key") else info["client_cert"]
    return out
