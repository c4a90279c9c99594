"""Offline stand-in for ansible-test's downloaded get-pip bootstrap script.

ansible-test runs ``get_pip_<version>.py [pip install options] pip==X ...`` inside a fresh virtual
environment. This machine cannot download the script, so `make sanity` places this file at
``~/.ansible/test/cache/get_pip_<version>.py``: it installs pip from the interpreter's bundled wheel
(ensurepip) and then lets that pip install the requested packages from the package index.
"""
import subprocess
import sys

DROPPED = ("--no-setuptools", "--no-wheel")


def main():
    args = [arg for arg in sys.argv[1:] if arg not in DROPPED]
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"])
    subprocess.check_call([sys.executable, "-m", "pip", "install"] + args)


if __name__ == "__main__":
    main()
