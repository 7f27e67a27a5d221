"""What a person does in the admin and on the client's pages, in English or French.

Plain functions over a Playwright ``Page``; the words come from ``WORDS`` so that the
French journey asserts the French interface.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from email.message import EmailMessage

from playwright.sync_api import Page, expect

from .harness import PASSWORD, MailServer, Stack, text_of

REQUESTS = "/admin/client-billing/requests/"
ALL_STATUSES = "?status=pending&status=paid&status=expired&status=deleted"

WORDS = {
    "en": {
        "settings": "Settings",
        "account_menu": "Client billing account",
        "create_account": "Create client billing account",
        "test_mode": "Test mode",
        "country": "Country",
        "country_name": "France",
        "privacy": "Privacy policy URL",
        "terms": "Terms of service URL",
        "connect": "Connect",
        "ready": "Ready to charge",
        "ready_message": "Your client billing account is ready to charge.",
        "client_billing": "Client billing",
        "site": "Site",
        "email_settings": "Email settings",
        "custom_smtp": "Custom SMTP",
        "host": "Host",
        "port": "Port",
        "security": "Security",
        "from": "From",
        "reply_to": "Reply-to",
        "client_language": "Language of client emails and pages",
        "save": "Save",
        "saved": "Email settings saved for {site}.",
        "send_test": "Send a test email",
        "send_to": "Send to",
        "test_sent": "A test email was sent to {email} through {server}.",
        "test_failed": "The test email could not be sent: ",
        "test_subject": "Test email from {site}",
        "add": "Add billing request",
        "email": "Email",
        "currency": "Currency",
        "amount": "Amount",
        "amount_typed": "49.90",
        "amount_shown": "€49.90",
        "description": "Description",
        "billing_type": "Billing type",
        "send": "Send billing request",
        "sent": "Billing request sent to {email}.",
        "subject": "Payment request from {site}",
        "pending": "Pending",
        "paid": "Paid",
        "expired": "Expired",
        "deleted": "Deleted",
        "queued": "Queued",
        "email_sent": "Sent",
        "delete": "Delete",
        "yes_delete": "Yes, delete",
        "deleted_message": "The billing request was deleted; its link no longer works.",
        "paid_page": "This request has been paid",
        "withdrawn_page": "This payment request was withdrawn",
        "expired_page": "This payment request has expired",
        "ask": "Ask for a new link",
        "asked": "client asked for a new link",
        "history": "History",
        "stripe_events": "Stripe events",
        # After the payment: refunds, invoices, subscriptions.
        "refund": "Refund",
        "amount_to_refund": "Amount to refund",
        "refund_typed": "10.00",
        "refund_shown": "€10.00",
        "rest_typed": "39.90",
        "refunded_message": "{amount} refunded.",
        "refunded_total": "{amount} refunded",
        "partially_refunded": "Partially refunded",
        "refunded": "Refunded",
        "refunds": "Refunds",
        "invoice_pdf": "Invoice PDF",
        "hosted_invoice": "Invoice page and receipt",
        "paid_invoice": "Invoice {number}:",
        "download_pdf": "download it (PDF)",
        "see_receipt": "see it with your receipt",
        "monthly_typed": "29.00",
        "monthly_shown": "€29.00",
        "subscription": "Subscription",
        "active": "active",
        "past_due": "past due",
        "next_payment": "Next payment",
        "ends_on": "Ends on",
        "cancel_subscription": "Cancel subscription",
        "at_period_end": "At the end of the period already paid",
        "ends_message": "The subscription ends on ",
        "card_failed_subject": "Your payment to {site} did not go through",
        "update_card": "Update your card here",
        "canceled_subject": "Your subscription to {site} is canceled",
        "stays_active": "It stays active until",
        "recurring": "Recurring revenue",
        "per_month": "{amount} / month",
        "at_risk": "1 at risk (payment failed)",
    },
    "fr": {
        "settings": "Paramètres",
        "account_menu": "Compte de facturation client",
        "create_account": "Créer un compte de facturation client",
        "test_mode": "Mode test",
        "country": "Pays",
        "country_name": "France",
        "privacy": "URL de la politique de confidentialité",
        "terms": "URL des conditions de service",
        "connect": "Connecter",
        "ready": "Prêt à encaisser",
        "ready_message": "Votre compte de facturation client est prêt à encaisser.",
        "client_billing": "Facturation client",
        "site": "Site",
        "email_settings": "Paramètres de courriel",
        "custom_smtp": "SMTP personnalisé",
        "host": "Hôte",
        "port": "Port",
        "security": "Sécurité",
        "from": "De",
        "reply_to": "Répondre à",
        "client_language": "Langue des courriels et des pages des clients",
        "save": "Sauvegarder",
        "saved": "Paramètres de courriel enregistrés pour {site}.",
        "send_test": "Envoyer un courriel de test",
        "send_to": "Envoyer à",
        "test_sent": "Un courriel de test a été envoyé à {email} par {server}.",
        "test_failed": "Le courriel de test n'a pas pu être envoyé : ",
        "test_subject": "Courriel de test de {site}",
        "add": "Ajouter une demande de facturation",
        "email": "Courriel",
        "currency": "Devise",
        "amount": "Montant",
        # Typed as a French user types it (a decimal comma), shown as French shows it.
        "amount_typed": "49,90",
        "amount_shown": "49,90\u00a0€",
        "description": "Description",
        "billing_type": "Type de facturation",
        "send": "Envoyer la demande de facturation",
        "sent": "Demande de facturation envoyée à {email}.",
        "subject": "Demande de paiement de {site}",
        "pending": "En attente",
        "paid": "Payé",
        "expired": "Expiré",
        "deleted": "Supprimée",
        "queued": "En file d'attente",
        "email_sent": "Envoyé",
        "delete": "Supprimer",
        "yes_delete": "Oui, supprimer",
        "deleted_message": (
            "La demande de facturation a été supprimée ; son lien ne fonctionne plus."
        ),
        "paid_page": "Cette demande a été payée",
        "withdrawn_page": "Cette demande de paiement a été retirée",
        "expired_page": "Cette demande de paiement a expiré",
        "ask": "Demander un nouveau lien",
        "asked": "le client a demandé un nouveau lien",
        "history": "Historique",
        "stripe_events": "Événements Stripe",
        "refund": "Rembourser",
        "amount_to_refund": "Montant à rembourser",
        # Typed and shown as in French (a decimal comma, the euro sign after).
        "refund_typed": "10,00",
        "refund_shown": "10,00\u00a0€",
        "rest_typed": "39,90",
        "refunded_message": "{amount} remboursés.",
        "refunded_total": "{amount} remboursés",
        "partially_refunded": "Remboursé en partie",
        "refunded": "Remboursé",
        "refunds": "Remboursements",
        "invoice_pdf": "Facture PDF",
        "hosted_invoice": "Page de la facture et reçu",
        "paid_invoice": "Facture {number} :",
        "download_pdf": "la télécharger (PDF)",
        "see_receipt": "la voir avec votre reçu",
        "monthly_typed": "29,00",
        "monthly_shown": "29,00\u00a0€",
        "subscription": "Abonnement",
        "active": "actif",
        "past_due": "en retard de paiement",
        "next_payment": "Prochain paiement",
        "ends_on": "Se termine le",
        "cancel_subscription": "Résilier l'abonnement",
        "at_period_end": "À la fin de la période déjà payée",
        "ends_message": "L'abonnement se termine le ",
        "card_failed_subject": "Votre paiement à {site} n'a pas abouti",
        "update_card": "Mettez à jour votre carte ici",
        "canceled_subject": "Votre abonnement à {site} est résilié",
        "stays_active": "Il reste actif jusqu'au",
        "recurring": "Revenu récurrent",
        "per_month": "{amount} / mois",
        "at_risk": "1 à risque (paiement échoué)",
    },
}


def field(page: Page, label: str):
    """The form field labelled ``label`` (Wagtail marks required ones with "*")."""
    return page.get_by_label(re.compile(rf"^\s*{re.escape(label)}\s*\*?\s*$"))


def log_in(page: Page, stack: Stack, username: str) -> None:
    page.goto(f"{stack.url}/admin/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{stack.url}/admin/")


def connect_account(page: Page, stack: Stack, w: dict[str, str], shot=None) -> None:
    """Settings -> Client billing account -> create it, onboard at "Stripe", see it ready."""
    page.get_by_role("button", name=w["settings"], exact=True).click()
    page.get_by_role("link", name=w["account_menu"], exact=True).click()
    page.get_by_role("link", name=w["create_account"]).click()
    expect(page.get_by_label(w["test_mode"])).to_be_checked()
    field(page, w["country"]).select_option(label=w["country_name"])
    page.get_by_label(w["privacy"]).fill("https://agency.example/privacy")
    page.get_by_label(w["terms"]).fill("https://agency.example/terms")
    if shot:
        shot(page, "agency-connect-form.png")
    page.get_by_role("button", name=w["connect"], exact=True).click()
    finish_onboarding(page, stack, w, shot)


def finish_onboarding(page: Page, stack: Stack, w: dict[str, str], shot=None) -> None:
    # The (simulated) Stripe onboarding, then back in the admin.
    page.wait_for_url(re.compile(re.escape(stack.simulator.url) + "/setup/"))
    expect(page.get_by_role("heading", name="Set up your Stripe account")).to_be_visible()
    if shot:
        shot(page, "agency-onboarding.png")
    page.get_by_role("button", name="Complete onboarding").click()
    page.wait_for_url(re.compile(re.escape(stack.url) + "/admin/"))
    expect(page.get_by_text(w["ready_message"])).to_be_visible()
    section = page.locator("section[data-mode=test]")
    expect(section.get_by_role("heading", name=w["ready"])).to_be_visible()
    expect(section).to_contain_text("acct_")
    if shot:
        shot(page, "agency-ready.png")


def open_requests(page: Page, stack: Stack, w: dict[str, str], site_name: str) -> None:
    """The "Client billing" listing of ``site_name`` (chosen with the site switcher)."""
    page.goto(f"{stack.url}{REQUESTS}")
    expect(page.get_by_role("heading", name=w["client_billing"], exact=True)).to_be_visible()
    switcher = field(page, w["site"])
    if switcher.locator("option:checked").inner_text().strip() != site_name:
        with page.expect_navigation():
            switcher.select_option(label=site_name)
    expect(switcher.locator("option:checked")).to_have_text(site_name)


def set_custom_smtp(
    page: Page,
    w: dict[str, str],
    site_name: str,
    server: MailServer,
    sender: str,
    reply_to: str,
    client_language: str = "",
) -> None:
    """From the listing: Email settings -> Custom SMTP on ``server`` (and the language of
    the site's clients, by its name) -> Save."""
    page.get_by_role("link", name=w["email_settings"]).first.click()
    page.get_by_label(w["custom_smtp"]).check()
    field(page, w["host"]).fill(server.host)
    field(page, w["port"]).fill(str(server.port))
    field(page, w["security"]).select_option("none")
    field(page, w["from"]).fill(sender)
    field(page, w["reply_to"]).fill(reply_to)
    if client_language:
        field(page, w["client_language"]).select_option(label=client_language)
    page.get_by_role("button", name=w["save"], exact=True).click()
    expect(page.get_by_text(w["saved"].format(site=site_name))).to_be_visible()


def send_test_email(page: Page, w: dict[str, str], to: str) -> None:
    """On the email settings page: Send a test email."""
    field(page, w["send_to"]).fill(to)
    page.get_by_role("button", name=w["send_test"], exact=True).click()


@dataclass
class Request:
    """A billing request as the editor types it."""

    email: str
    amount: str
    billing_type: str = "one_time"
    currency: str = "eur"
    description: str = ""


def fill_request(page: Page, w: dict[str, str], request: Request) -> None:
    field(page, w["email"]).fill(request.email)
    field(page, w["currency"]).select_option(request.currency)
    field(page, w["amount"]).fill(request.amount)
    if request.description:
        field(page, w["description"]).fill(request.description)
    field(page, w["billing_type"]).select_option(request.billing_type)


def open_add_form(page: Page, w: dict[str, str]) -> None:
    """From the listing: "+ Add billing request"."""
    page.get_by_role("link", name=w["add"]).first.click()
    expect(page.get_by_role("button", name=w["send"])).to_be_visible()


def add_request(page: Page, w: dict[str, str], request: Request, shot=None) -> None:
    """From the listing: add a request and see it Pending in the listing."""
    open_add_form(page, w)
    fill_request(page, w, request)
    if shot:
        shot(page, "billing-request-form.png")
    page.get_by_role("button", name=w["send"]).click()
    expect(page.get_by_text(w["sent"].format(email=request.email))).to_be_visible()
    expect(row(page, request.email)).to_contain_text(w["pending"])


def row(page: Page, email: str):
    return page.get_by_role("row").filter(has_text=email)


def wait_for_row(page: Page, email: str, text: str, timeout: float = 60) -> None:
    """Reload the listing until the request's row shows ``text`` (webhook or task done)."""
    deadline = time.monotonic() + timeout
    while True:
        content = " ".join((row(page, email).first.text_content() or "").split())
        if text in content:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"The row of {email} reads {content!r}, not {text!r}.")
        time.sleep(0.5)
        page.reload()


def pay(client: Page, stack: Stack, link: str, shot=None) -> str:
    """The client opens the link, pays on (simulated) Stripe Checkout; the session id."""
    client.goto(link)
    client.wait_for_url(re.compile(re.escape(stack.simulator.url) + "/c/pay/"))
    session_id = client.url.rsplit("/", 1)[-1]
    expect(client.get_by_role("heading", name="Checkout")).to_be_visible()
    if shot:
        shot(client, "checkout.png")
    client.get_by_role("button", name="Pay", exact=True).click()
    return session_id


def checkout_session_of(client: Page, stack: Stack, link: str) -> str:
    """Open the link as the client and read the Checkout Session it leads to."""
    client.goto(link)
    client.wait_for_url(re.compile(re.escape(stack.simulator.url) + "/c/pay/"))
    return client.url.rsplit("/", 1)[-1]


def check_chart(page: Page) -> None:
    """The dashboard's paid-per-month chart draws its twelve bars: every coordinate a
    number the browser reads (a localized "442,0" draws nothing), this month's bar tall."""
    bars = page.locator("[data-wcb-dashboard] ~ figure svg rect")
    expect(bars).to_have_count(12)
    values = bars.evaluate_all(
        "rects => rects.flatMap(r => ['x', 'y', 'width', 'height'].map(a => r.getAttribute(a)))"
    )
    assert all(value.replace(".", "", 1).isdigit() for value in values), values
    heights = bars.evaluate_all("rects => rects.map(r => r.getBBox().height)")
    assert heights[-1] == max(heights) > 0, heights


def open_request(page: Page, email: str) -> None:
    """From the listing: the request's page (its email is the link)."""
    row(page, email).get_by_role("link", name=email).first.click()


def wait_for_text(page: Page, selector: str, text: str, timeout: float = 60) -> None:
    """Reload the page until ``selector`` shows ``text`` (a webhook's or task's effect)."""
    wanted = " ".join(text.split())
    deadline = time.monotonic() + timeout
    while True:
        content = " ".join(" ".join(page.locator(selector).all_text_contents()).split())
        if wanted in content:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{selector} reads {content!r}, not {wanted!r}.")
        time.sleep(0.5)
        page.reload()


def refund(page: Page, w: dict[str, str], amount: str = "", remaining: str = "", shot=None) -> None:
    """On a paid request's page: Refund -> the amount (what remains, ``remaining`` as the
    form writes it, unless ``amount`` is typed) -> Refund; back on the request's page,
    which lists the refunds."""
    page.get_by_role("link", name=w["refund"], exact=True).click()
    expect(page.get_by_role("heading", name=w["refund"], exact=True)).to_be_visible()
    amount_field = field(page, w["amount_to_refund"])
    if remaining:
        expect(amount_field).to_have_value(remaining)  # starts at what remains
    if amount:
        amount_field.fill(amount)
    if shot:
        shot(page, "refund-form.png")
    page.get_by_role("button", name=w["refund"], exact=True).click()
    expect(page.locator("[data-wcb-refunds]")).to_be_visible()


def cancel_subscription(page: Page, w: dict[str, str], shot=None) -> None:
    """On a subscription's page: Cancel subscription -> at the end of the period (the
    default) -> Cancel subscription; back on the request's page, told when it ends."""
    page.get_by_role("link", name=w["cancel_subscription"], exact=True).click()
    expect(page.get_by_role("heading", name=w["cancel_subscription"], exact=True)).to_be_visible()
    expect(page.get_by_label(w["at_period_end"])).to_be_checked()
    if shot:
        shot(page, "cancel-subscription.png")
    page.get_by_role("button", name=w["cancel_subscription"], exact=True).click()
    expect(page.get_by_text(w["ends_message"])).to_be_visible()


def manage_link(message: EmailMessage) -> str:
    """The /billing/manage/<token>/<key>/ link (the client's subscription page) in an email."""
    match = re.search(r"https?://\S+/billing/manage/[\w-]+/[0-9a-f]+/", text_of(message))
    if match is None:
        raise AssertionError(f"No subscription link in:\n{text_of(message)}")
    return match.group(0)
