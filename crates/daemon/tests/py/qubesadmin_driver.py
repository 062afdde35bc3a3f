#!/usr/bin/env python3
"""Runs one of Qubes' own tools (package qubesadmin) against a qpcid socket.

Usage: qubesadmin_driver.py SOCKET TOOL [ARG...]
       qubesadmin_driver.py --probe

TOOL is qvm-pci, qvm-device, qvm-prefs or qvm-ls. As spec/admin-api.md
§1.1 says, the socket path is monkeypatched into
qubesadmin.config.QUBESD_SOCKET and the tool's main() gets
app=qubesadmin.app.QubesLocal(), so neither /etc/qubes-release nor
/run/qubesd.sock is needed. sys.argv[0] is TOOL, so qvm-device's main()
takes the device class from `qvm-pci` as the real entry point does.

Exit status: the tool's; 77 when qubesadmin cannot be imported (the Rust
test then skips). --probe prints where qubesadmin was found.
"""

import importlib
import sys

TOOLS = {
    "qvm-pci": "qvm_device",
    "qvm-device": "qvm_device",
    "qvm-prefs": "qvm_prefs",
    "qvm-ls": "qvm_ls",
}


def main():
    try:
        import qubesadmin
        import qubesadmin.app
        import qubesadmin.config
        import qubesadmin.exc  # noqa: F401
    except ImportError as e:
        print("qubesadmin is not importable: %s" % e, file=sys.stderr)
        return 77
    if sys.argv[1:2] == ["--probe"]:
        try:
            from importlib.metadata import version

            ver = version("qubesadmin")
        except Exception:  # a source checkout on PYTHONPATH has no metadata
            ver = "unknown"
        print("qubesadmin %s from %s" % (ver, qubesadmin.__file__))
        return 0
    socket, tool, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    qubesadmin.config.QUBESD_SOCKET = socket
    module = importlib.import_module("qubesadmin.tools." + TOOLS[tool])
    sys.argv = [tool] + args
    app = qubesadmin.app.QubesLocal()
    try:
        code = module.main(args, app=app)
    except SystemExit as e:
        code = e.code
    sys.stdout.flush()
    if isinstance(code, str):
        print(code, file=sys.stderr)
        return 1
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
