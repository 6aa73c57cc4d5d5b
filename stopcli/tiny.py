"""Tiny LLaVA-OneVision checkpoints built locally (no hub): a word-level tokenizer over a small vocabulary, a ChatML
chat template, the real processor classes and a randomly initialised model, saved with `save_pretrained`.

Tests build them in fixtures; the shipped `tiny-random` preset is one of them, so `stop ask` answers on a fresh
machine with no network. They load through exactly the code path real checkpoints use."""

from __future__ import annotations

from pathlib import Path

import torch

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}<video>\n{% elif part['type'] == 'image' %}<image>\n"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

SPECIALS = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
WORDS = (
    "user assistant system you are a helpful is there in the video what color shape object which direction does "
    "move moves how many objects visible at end of yes no red green blue yellow circle square triangle left right "
    "up down still one two three zero options answer with letter b c d star happens ? . , ( ) : describe this it"
).split()


def build_tokenizer(words: list[str] | None = None):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + sorted(set(words or WORDS)))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<|im_end|>", pad_token="<pad>", unk_token="<unk>",
        extra_special_tokens={"image_token": "<image>", "video_token": "<video>"},
    )
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build_llava_onevision(path: str | Path, *, image_size: int = 96, patch_size: int = 8, vision_width: int = 32,
                          vision_layers: int = 2, text_width: int = 64, text_layers: int = 2, seed: int = 0,
                          words: list[str] | None = None) -> Path:
    """Save a random-weight LLaVA-OneVision (SigLIP + Qwen2) with its processor to `path`; returns the path."""
    from transformers import (LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration,
                              LlavaOnevisionImageProcessor, LlavaOnevisionProcessor, LlavaOnevisionVideoProcessor)

    path = Path(path)
    tok = build_tokenizer(words)
    config = LlavaOnevisionConfig(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=vision_width,
                           intermediate_size=2 * vision_width, num_hidden_layers=vision_layers,
                           num_attention_heads=2, image_size=image_size, patch_size=patch_size, vision_use_head=False),
        text_config=dict(model_type="qwen2", vocab_size=len(tok), hidden_size=text_width,
                         intermediate_size=2 * text_width, num_hidden_layers=text_layers, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=4096, rope_theta=10000.0,
                         tie_word_embeddings=False),
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        video_token_index=tok.convert_tokens_to_ids("<video>"),
        vision_feature_layer=-1, vision_feature_select_strategy="full",
        image_grid_pinpoints=[[image_size, image_size]],
    )
    config.text_config.eos_token_id = tok.eos_token_id
    config.text_config.pad_token_id = tok.pad_token_id
    torch.manual_seed(seed)
    model = LlavaOnevisionForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    size = {"height": image_size, "width": image_size}
    processor = LlavaOnevisionProcessor(
        # SigLIP's normalisation (mean = std = 0.5), as in the LLaVA-OneVision checkpoints
        image_processor=LlavaOnevisionImageProcessor(size=size, image_grid_pinpoints=[[image_size, image_size]],
                                                     image_mean=[0.5] * 3, image_std=[0.5] * 3),
        video_processor=LlavaOnevisionVideoProcessor(size=size, image_mean=[0.5] * 3, image_std=[0.5] * 3),
        tokenizer=tok, chat_template=CHAT_TEMPLATE,
        num_image_tokens=(image_size // patch_size) ** 2, vision_feature_select_strategy="full",
    )
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    processor.save_pretrained(path)
    return path
