"""The one exception a handler raises to say an event does not apply (a leaf module, so
that handler modules and the ``HANDLERS`` table can import each other's pieces)."""


class EventIgnored(Exception):
    """Raised by a handler: store the event as ignored, with the message as its note."""
