"""Email: the outbox (``outbox`` sends, ``queue`` fills it), the connections (``smtp``),
what failures mean (``failures``), composition (``messages``), anymail tracking."""
