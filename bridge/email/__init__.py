"""Inbound e-mail: parse, authenticate the sender, convert for the pair room, keep durably.

The SMTP adapter (`bridge.adapters.smtp`) runs the dialogue; these modules decide and convert:

- `parse`: bounded MIME parsing of untrusted bytes (`parse_message`, `MalformedEmail`).
- `authcheck`: is the From one of the pair's addresses, and is it authenticated
  (DKIM/SPF/DMARC directly, or the trusted MTA's `Authentication-Results`)?
- `sanitize`: HTML reduced to what Matrix allows in `formatted_body`.
- `convert`: a parsed message turned into a `ConvertedEmail` and m.room.message content.
- `inbox`: the durable inbox table the relay worker reads.
"""
