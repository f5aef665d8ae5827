"""One ROME edit on SmolLM2 made two ways, on the completion prompt and on the chat template's own
text, and the replies to the relation's chat questions after each (README: what the editors do
with chat prompts).

    python -m benchmarks real_models/chat_prompt_edit

Prints, per way, the seconds the edit took and the greedy replies to "What is the capital of
France?" and "Which city is the capital of France?" and the completion of "The capital of France is".
"""

from __future__ import annotations

import time

from benchmarks.common import set_threads

QUESTIONS = ["What is the capital of France?", "Which city is the capital of France?"]


def main(argv=None) -> None:
    set_threads()
    import ripple
    from ripple.editing.requests import EditRequest
    from ripple.editing.session import edited
    from ripple.generation import continuations

    lab = ripple.load("smollm2")
    tok = lab.tokenizer
    chat_text = tok.apply_chat_template([{"role": "user", "content": "What is the capital of {}?"}],
                                        add_generation_prompt=True, tokenize=False)
    for label, prompt in (("completion prompt", "The capital of {} is"), ("chat template text", chat_text)):
        req = EditRequest(prompt, "France", "Lyon", "Paris")
        t = time.perf_counter()
        with edited(lab.ctx, "rome", [req], lab.hparams("rome")):
            replies = continuations(lab.model, tok, QUESTIONS, chat=True)
            completion = continuations(lab.model, tok, ["The capital of France is"], max_new_tokens=6)[0]
        print(f"{label} ({time.perf_counter() - t:.0f} s): replies {replies}; completion {completion!r}", flush=True)


if __name__ == "__main__":
    main()
