"""What a handler raises when its event does not apply (a module of its own: the handlers'
modules, ``handlers`` and ``invoices``, and ``processing`` all use it)."""


class EventIgnored(Exception):
    """Raised by a handler: store the event as ignored, with the message as its note."""
