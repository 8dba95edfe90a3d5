"""What the Labeling tab shows: the guidelines, the keyboard script, the styles and the card of one phrase.

Static text and one pure function (`render_card`), kept apart from the tab's handlers (`labeling.ui`) so
the page can be read and tested without Gradio. Every value from the store is escaped: phrases, chunks and
annotator names are typed by visitors and models.
"""

from __future__ import annotations

import html

from convfill.nli import LABELS

GUIDELINES = """
**What you judge.** Is the *phrase* supported by what the Talker was given?

* **Knowledge phrase** (a knowledge chunk is shown): judge the phrase against the chunk plus the earlier
  phrases of the turn.
  * **1 - entailment**: everything the phrase says follows from them. Paraphrases, shortening, a friendly
    framing ("So, it was Jane Austen!") are entailment. This is the label to fix when the model said
    "neutral" to an acceptable paraphrase.
  * **2 - neutral**: it adds something the chunk does not say (a new fact, a guess, a number).
  * **3 - contradiction**: it says something the chunk or an earlier phrase contradicts.
* **Filler** (knowledge shows *silence*): judged against the user utterance plus earlier phrases. A good
  filler invents nothing: **2 - neutral** (or 1 if it only restates the question). If it states any fact
  of its own, or contradicts the user, press **3**. Add a note if unsure.

**Keys** (click on the page background first if the cursor is in a text box): **1 / 2 / 3** label and go
to the next phrase, **Enter** accepts the model's suggestion, **S** skips, **U** undoes your last label.

**What gets exported for training** (`python -m labeling export --format jsonl` or the button below):
human labels win over the model (majority of people; a tie goes to the more cautious label). Knowledge
phrases are kept only as *entailment*; fillers are kept as *entailment* or *neutral*; contradictions,
unjudged, cut-off and error phrases are dropped.
"""

KEY_JS = """
(() => {
  if (window.__convfillLabelKeys) return;
  window.__convfillLabelKeys = true;
  const ids = {"1": "lab-btn-entailment", "2": "lab-btn-neutral", "3": "lab-btn-contradiction",
               "Enter": "lab-btn-accept", "s": "lab-btn-skip", "S": "lab-btn-skip",
               "u": "lab-btn-undo", "U": "lab-btn-undo"};
  const queue = [];
  let busy = false;
  const button = (id) => {
    const el = document.getElementById(id);
    if (!el) return null;
    return el.tagName === "BUTTON" ? el : el.querySelector("button");
  };
  const nonce = () => {
    const c = document.querySelector("#lab-card [data-nonce]");
    return c ? c.getAttribute("data-nonce") : null;
  };
  const pump = () => {
    if (busy || !queue.length) return;
    const b = button(queue.shift());
    if (!b || b.offsetParent === null) { queue.length = 0; return; }
    busy = true;
    const before = nonce(), t0 = Date.now();
    b.click();
    // Wait until the server has re-rendered the card (its nonce changes on every answer), then send the
    // next queued key; give up waiting after 15 s so a lost answer never blocks the keyboard for good.
    const wait = () => {
      if (nonce() !== before || Date.now() - t0 > 15000) { busy = false; pump(); }
      else setTimeout(wait, 25);
    };
    setTimeout(wait, 25);
  };
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.isComposing || e.repeat) return;
    const t = e.target;
    const tag = t && t.tagName ? t.tagName.toLowerCase() : "";
    if (tag === "input" || tag === "textarea" || tag === "select" || (t && t.isContentEditable)) return;
    const id = ids[e.key];
    if (!id) return;
    const b = button(id);
    if (!b || b.offsetParent === null) return;  // the Labeling tab is not on screen
    e.preventDefault();  // Enter on a focused button must not click it a second time
    e.stopPropagation();
    queue.push(id);
    pump();
  }, true);
})();
"""

CSS = """
#lab-card .lab-card { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 12px 16px; }
#lab-card .lab-k { display: inline-block; min-width: 9em; color: var(--body-text-color-subdued); font-size: 0.9em; }
#lab-card .lab-row { margin: 4px 0; }
#lab-card .lab-phrase { font-size: 1.25em; margin: 10px 0; padding: 8px 12px; border-left: 4px solid var(--color-accent); }
#lab-card .lab-sugg { margin-top: 6px; }
#lab-card .lab-filler { font-style: italic; color: var(--body-text-color-subdued); }
"""

def _e(s) -> str:
    return html.escape(str(s or ""))


def render_card(item: dict | None, nonce: int, message: str = "") -> str:
    """The HTML card of one queue item (`LabelStore.item`); `nonce` changes with every answer (the key script
    waits for it)."""
    if item is None:
        body = f"<p><b>Nothing left to label with these filters.</b> {_e(message)}</p>"
        return f'<div class="lab-card" data-phrase-id="" data-nonce="{nonce}">{body}</div>'
    know = ('<span class="lab-filler">silence (a filler: judged against the user utterance)</span>'
            if item["filler"] else _e(item["knowledge"]))
    earlier = " / ".join(_e(x) for x in item["earlier"]) or '<span class="lab-filler">none</span>'
    s = item["suggestion"]
    if s:
        probs = " · ".join(f"{k} {s['probs'].get(k, 0):.2f}" for k in LABELS)
        sugg = (f'Model suggestion: <b class="lab-sugg-label">{_e(s["label"])}</b> ({probs}) '
                f'<small>{_e(s["model_id"])}</small>')
    else:
        sugg = "No model suggestion for this phrase."
    others = ", ".join(f"{_e(x['annotator'])}: {_e(x['label'])}" for x in item["labels"])
    return (f'<div class="lab-card" data-phrase-id="{item["id"]}" data-nonce="{nonce}">'
            f'<div class="lab-row"><span class="lab-k">User</span> {_e(item["user"])}</div>'
            f'<div class="lab-row"><span class="lab-k">Knowledge</span> {know}</div>'
            f'<div class="lab-row"><span class="lab-k">Earlier phrases</span> {earlier}</div>'
            f'<div class="lab-phrase">{_e(item["text"])}</div>'
            f'<div class="lab-sugg">{sugg}</div>'
            f'<div class="lab-row"><span class="lab-k">Labels so far</span> {others or "none"}</div>'
            f'<div class="lab-row"><small>phrase #{item["id"]} · reasoner {_e(item["reasoner"])}</small></div>'
            "</div>")
