"""Long prompts with weights, `(word:1.2)` and past 77 tokens, through compel."""

from __future__ import annotations


def weighted_prompt_kwargs(pipe, prompt: str, negative_prompt: str | None = None) -> dict:
    """Pipeline kwargs (prompt_embeds, negative_prompt_embeds and for SDXL the pooled ones) for a
    compel-syntax prompt. Replaces `prompt`/`negative_prompt` in the call."""
    try:
        from compel import CompelForSD, CompelForSDXL
    except ImportError as err:
        raise ImportError("weighted prompts need compel: pip install compel") from err

    from ..models.architectures import SDXL, family_of_pipeline

    if family_of_pipeline(pipe) == SDXL:
        out = CompelForSDXL(pipe)(prompt, negative_prompt=negative_prompt or "")
        return {"prompt_embeds": out.embeds, "pooled_prompt_embeds": out.pooled_embeds,
                "negative_prompt_embeds": out.negative_embeds, "negative_pooled_prompt_embeds": out.negative_pooled_embeds}
    out = CompelForSD(pipe)(prompt, negative_prompt=negative_prompt or "")
    return {"prompt_embeds": out.embeds, "negative_prompt_embeds": out.negative_embeds}
