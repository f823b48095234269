"""Notifications: the channels a message reaches a person by (channels.py) and the outbox that
turns the ledger's alerts into one durable delivery job per channel (outbox.py).
docs/notifications.md says how to configure each channel and what a receiver checks."""

from facturasd.notify.channels import (
    Attachment,
    Channel,
    Email,
    Log,
    Message,
    Nanobot,
    Refused,
    Webhook,
    channels,
    open_channels,
)
from facturasd.notify.outbox import NOTIFY, NOTIFY_REPORT, Outbox, probe

__all__ = [
    "NOTIFY",
    "NOTIFY_REPORT",
    "Attachment",
    "Channel",
    "Email",
    "Log",
    "Message",
    "Nanobot",
    "Outbox",
    "Refused",
    "Webhook",
    "channels",
    "open_channels",
    "probe",
]
