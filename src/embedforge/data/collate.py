"""Turn Example records into model inputs: formatted queries and documents, tokenised with EOS.

A batch of B examples with n hard-negative slots each gives B queries and B * (1 + n) document
slots laid out as [pos_0..pos_{B-1}, neg1_0..neg1_{B-1}, ..., negn_0..negn_{B-1}].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from embedforge.data.formatting import DEFAULT_QUERY_TEMPLATE, format_query
from embedforge.data.schema import Example
from embedforge.losses.duplicates import EMPTY_SLOT, text_hash
from embedforge.model.tokenize import tokenize


@dataclass
class ContrastiveCollator:
    tokenizer: object
    query_max_length: int = 512
    doc_max_length: int = 512
    hard_negatives: int = 1
    template: str = DEFAULT_QUERY_TEMPLATE
    instruction_mode: str = "instruction"

    def negative_slots(self, example: Example) -> list[str | None]:
        """Exactly `hard_negatives` slots per example; None marks a slot the record cannot fill.

        Short-short and long-long matching records have no hard negative (docs/method.md section 1):
        their slots stay empty and the loss masks them out, so batches may mix task types.
        """
        own = example.negatives[: self.hard_negatives]
        return own + [None] * (self.hard_negatives - len(own))

    def __call__(self, examples: list[Example]) -> dict:
        queries = [format_query(e.query, e.instruction, self.template, self.instruction_mode, e.task_type)
                   for e in examples]
        # Slot layout (the one info_nce and sentence-transformers use): all positives, then the
        # k-th negative of every example for k = 0..n-1.
        slots: list[str | None] = [e.positive for e in examples]
        per_example = [self.negative_slots(e) for e in examples]
        for k in range(self.hard_negatives):
            slots += [negs[k] for negs in per_example]
        doc_mask = torch.tensor([s is not None for s in slots], dtype=torch.bool)
        q = tokenize(self.tokenizer, queries, self.query_max_length)
        d = tokenize(self.tokenizer, [s for s in slots if s is not None], self.doc_max_length)
        return {
            "query_input_ids": q["input_ids"],
            "query_attention_mask": q["attention_mask"],
            "doc_input_ids": d["input_ids"],  # only the filled slots are encoded
            "doc_attention_mask": d["attention_mask"],
            "doc_mask": doc_mask,  # (B * (1 + n),) which slots hold a real document
            # Text hashes, so a slot repeating a query's positive is not used as its negative.
            "doc_hash": torch.tensor([EMPTY_SLOT if s is None else text_hash(s) for s in slots], dtype=torch.long),
        }
