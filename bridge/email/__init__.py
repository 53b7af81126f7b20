"""Inbound e-mail: parse, authenticate the sender, convert for the pair room, keep durably.

The SMTP adapter (`bridge.adapters.smtp`) runs the dialogue; these modules decide and convert:

- `parse`: bounded MIME parsing of untrusted bytes (`parse_message`, `MalformedEmail`).
- `authcheck`: is the From one of the pair's addresses, and is it authenticated
  (DKIM/SPF/DMARC directly, or the trusted MTA's `Authentication-Results`)?
- `sanitize`: HTML reduced to what Matrix allows in `formatted_body`.
- `convert`: a parsed message turned into a `ConvertedEmail` and m.room.message content.
- `inbox`: recipient routing to a pair, acceptance into the durable inbox the relay reads.

The running bridge's part, the SMTP listener's installer and the relay worker, is the
e-mail feature (`bridge.features.email`).
"""
