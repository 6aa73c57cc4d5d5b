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
                          vision_heads: int = 2, words: list[str] | None = None, tie_embeddings: bool = False) -> Path:
    """Save a random-weight LLaVA-OneVision (SigLIP + Qwen2) with its processor to `path`; returns the path."""
    from transformers import (LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration,
                              LlavaOnevisionImageProcessor, LlavaOnevisionProcessor, LlavaOnevisionVideoProcessor)

    path = Path(path)
    tok = build_tokenizer(words)
    config = LlavaOnevisionConfig(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=vision_width,
                           intermediate_size=2 * vision_width, num_hidden_layers=vision_layers,
                           num_attention_heads=vision_heads, image_size=image_size, patch_size=patch_size,
                           vision_use_head=False),
        text_config=dict(model_type="qwen2", vocab_size=len(tok), hidden_size=text_width,
                         intermediate_size=2 * text_width, num_hidden_layers=text_layers, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=4096, rope_theta=10000.0,
                         tie_word_embeddings=tie_embeddings),
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        video_token_index=tok.convert_tokens_to_ids("<video>"),
        vision_feature_layer=-1, vision_feature_select_strategy="full",
        image_grid_pinpoints=[[image_size, image_size]], tie_word_embeddings=tie_embeddings,
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


QWEN_SPECIALS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
QWEN_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_qwen_vl(path: str | Path, *, version: str = "2.5", vision_width: int = 32, vision_layers: int = 2,
                  text_width: int = 64, text_layers: int = 2, max_pixels: int = 112 * 112, seed: int = 0) -> Path:
    """Save a random-weight Qwen2-VL (version "2") or Qwen2.5-VL ("2.5") with its processor to `path`."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    path = Path(path)
    vocab = {tok: i for i, tok in enumerate(SPECIALS + QWEN_SPECIALS + sorted(set(WORDS)))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<pad>", unk_token="<unk>",
                                  extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"})
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|vision_start|>", "<|vision_end|>"]})
    tok.chat_template = QWEN_TEMPLATE
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    heads = 4
    half = text_width // heads // 2
    section = [half - 2 * (half // 3), half // 3, half // 3]
    text = dict(vocab_size=len(tok), hidden_size=text_width, intermediate_size=2 * text_width,
                num_hidden_layers=text_layers, num_attention_heads=heads, num_key_value_heads=2,
                max_position_embeddings=4096, rope_theta=10000.0, tie_word_embeddings=False,
                rope_scaling={"type": "mrope", "mrope_section": section}, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id)
    common = dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                  vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(seed)
    if version == "2":
        from transformers import (Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor,
                                  Qwen2VLProcessor, Qwen2VLVideoProcessor)

        config = Qwen2VLConfig(vision_config=dict(depth=vision_layers, embed_dim=vision_width, hidden_size=text_width,
                                                  num_heads=2, mlp_ratio=2, patch_size=14, spatial_merge_size=2,
                                                  temporal_patch_size=2, in_channels=3),
                               text_config=text, **common)
        model = Qwen2VLForConditionalGeneration(config).eval()
        proc_cls, img_cls, vid_cls = Qwen2VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor
    else:
        from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                                  Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

        config = Qwen2_5_VLConfig(vision_config=dict(depth=vision_layers, hidden_size=vision_width,
                                                     intermediate_size=2 * vision_width, num_heads=2, patch_size=14,
                                                     spatial_merge_size=2, temporal_patch_size=2,
                                                     out_hidden_size=text_width, window_size=56,
                                                     fullatt_block_indexes=[vision_layers - 1], in_channels=3),
                                  text_config=text, **common)
        model = Qwen2_5_VLForConditionalGeneration(config).eval()
        proc_cls, img_cls, vid_cls = Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    pixels = dict(min_pixels=56 * 56, max_pixels=max_pixels)
    processor = proc_cls(image_processor=img_cls(**pixels), video_processor=vid_cls(**pixels), tokenizer=tok,
                         chat_template=QWEN_TEMPLATE)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    processor.save_pretrained(path)
    return path
