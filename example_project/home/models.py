from wagtail.fields import RichTextField
from wagtail.models import Page


class HomePage(Page):
    """A client site's home page."""

    body = RichTextField(blank=True)

    content_panels = [*Page.content_panels, "body"]
