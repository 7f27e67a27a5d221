// "Copy payment link": Wagtail's clipboard controller copies, then only dispatches an
// event. Say "Copied" on the button for a moment, in words a screen reader announces.
document.addEventListener("w-clipboard:copied", (event) => {
  const button = event.target.closest("[data-wcb-copied-label]");
  const label = button && button.querySelector("[data-wcb-label]");
  if (!label) return;
  const original = label.dataset.wcbOriginal || label.textContent;
  label.dataset.wcbOriginal = original;
  label.textContent = button.dataset.wcbCopiedLabel;
  window.clearTimeout(Number(label.dataset.wcbTimer || 0));
  label.dataset.wcbTimer = String(
    window.setTimeout(() => {
      label.textContent = original;
    }, 2000),
  );
});
