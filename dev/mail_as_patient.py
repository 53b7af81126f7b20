"""`python -m dev.mail_as_patient`: mail a pair as its patient, the way the practice's MTA
hands mail on to the bridge.

The demo runs the bridge with `smtp.sender_auth: behind_mta`: the bridge believes only the
`Authentication-Results` its MTA writes next to the MTA's own `Received`. There is no MTA
in the demo, so this helper writes those two headers itself, with the config's
`authserv_id`, and delivers over plain SMTP to the bridge's listener on loopback. A real
patient's mail goes through the practice's MTA instead, which checks DKIM, SPF and DMARC.

    python -m dev.mail_as_patient -c demo/config.yaml --to pair-…@mail.localhost --text "Hi"
"""

from __future__ import annotations

import argparse
import smtplib
import sys
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from bridge.config import ConfigError, load_config

#: The demo patient's e-mail address: the only sender the demo pair accepts mail from.
PATIENT_EMAIL = "patient@example.org"


def patient_message(
    *, to: str, text: str, subject: str, sender: str, authserv_id: str
) -> EmailMessage:
    """The patient's message as the MTA hands it on: its `Received` on top, its results below."""
    domain = sender.rpartition("@")[2]
    msg = EmailMessage()
    msg["Received"] = (
        f"from localhost (localhost [127.0.0.1]) by {authserv_id} with ESMTP; "
        f"{formatdate(localtime=True)}"
    )
    msg["Authentication-Results"] = (
        f"{authserv_id}; dkim=pass header.d={domain}; spf=pass smtp.mailfrom={sender};"
        f" dmarc=pass header.from={domain}"
    )
    msg["From"] = f"Demo Patient <{sender}>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain=domain)
    msg.set_content(text)
    return msg


def _reply(code: int, text: bytes | str) -> str:
    """An SMTP reply as one line, e.g. `550 5.7.1 Sender address is not allowed ...`."""
    return f"{code} {text.decode('utf-8', 'replace') if isinstance(text, bytes) else text}"


def main(args: argparse.Namespace) -> int:
    """Deliver one message; a refusal is printed as the bridge's SMTP reply."""
    try:
        cfg = load_config(Path(args.config))
    except ConfigError as err:
        print(f"mail_as_patient: {err}", file=sys.stderr)
        return 2
    smtp = cfg.smtp
    if not smtp.enabled or smtp.sender_auth != "behind_mta" or not smtp.authserv_id:
        print(
            f"mail_as_patient: {args.config} does not run the bridge behind an MTA "
            "(smtp.enabled with sender_auth: behind_mta); this helper plays that MTA",
            file=sys.stderr,
        )
        return 2
    msg = patient_message(
        to=args.to,
        text=args.text,
        subject=args.subject,
        sender=args.sender,
        authserv_id=smtp.authserv_id,
    )
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=30) as client:
            client.send_message(msg, from_addr=args.sender, to_addrs=[args.to])
    except smtplib.SMTPResponseException as err:
        print(f"mail_as_patient: refused: {_reply(err.smtp_code, err.smtp_error)}", file=sys.stderr)
        return 1
    except smtplib.SMTPRecipientsRefused as err:
        for code, text in err.recipients.values():
            print(f"mail_as_patient: refused: {_reply(code, text)}", file=sys.stderr)
        return 1
    except OSError as err:
        print(
            f"mail_as_patient: cannot reach the bridge's SMTP at {smtp.host}:{smtp.port} "
            f"({err}); is the demo running?",
            file=sys.stderr,
        )
        return 1
    print(f"Accepted for {args.to}; it shows in the pair room in a moment.")
    return 0


def cli(argv: list[str] | None = None) -> int:
    """`python -m dev.mail_as_patient [-c CONFIG] --to ADDRESS --text TEXT`."""
    parser = argparse.ArgumentParser(
        prog="python -m dev.mail_as_patient",
        description="Mail a pair as its patient, through the demo bridge's SMTP listener.",
    )
    parser.add_argument("-c", "--config", default="demo/config.yaml", help="the demo's config")
    parser.add_argument("--to", required=True, help="the pair's address, pair-…@…")
    parser.add_argument("--text", required=True, help="the message's text")
    parser.add_argument("--subject", default="A message by e-mail", help="the subject line")
    parser.add_argument(
        "--from", dest="sender", default=PATIENT_EMAIL, help="the patient's address"
    )
    return main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(cli())
