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


# (width, layers, attention heads, key-value heads, MLP width) of the language models LLaVA-OneVision ships with
LLAVA_OV_LMS = {"0.5b": (896, 24, 14, 2, 4864), "7b": (3584, 28, 28, 4, 18944)}
SIGLIP_SO400M = dict(vision_width=1152, vision_layers=26, vision_heads=16)  # as LLaVA-OneVision uses it
SIGLIP_SO400M_MLP = 4304


def build_llava_onevision_shaped(path: str | Path, lm: str, vision: str = "small") -> Path:
    """A random-weight LLaVA-OneVision at 384 px, patch 14 (729 patches a frame, 196 tokens after pooling), for
    timings with real token counts: its language model shaped like LLaVA-OneVision's own (`lm` "0.5b" or "7b"; "tiny":
    2 layers x 64), its vision tower small (`vision` "small": 2 layers x 64) or SigLIP-so400m's real shape ("so400m")."""
    from transformers import LlavaOnevisionForConditionalGeneration

    tower = SIGLIP_SO400M if vision == "so400m" else dict(vision_width=64, vision_layers=2)
    text = dict(text_width=64, text_layers=2) if lm == "tiny" else dict(zip(("text_width", "text_layers"),
                                                                            LLAVA_OV_LMS[lm][:2]))
    build_llava_onevision(path, image_size=384, patch_size=14, **tower, **text)
    if lm == "tiny" and vision != "so400m":
        return Path(path)
    cfg = LlavaOnevisionForConditionalGeneration.from_pretrained(path).config  # then the widths build() does not set
    if vision == "so400m":
        cfg.vision_config.intermediate_size = SIGLIP_SO400M_MLP
    if lm != "tiny":
        width, _, heads, kv, mlp = LLAVA_OV_LMS[lm]
        t = cfg.text_config
        t.num_attention_heads, t.num_key_value_heads, t.intermediate_size = heads, kv, mlp
        if getattr(t, "head_dim", None) is not None:
            t.head_dim = width // heads
    torch.manual_seed(0)
    LlavaOnevisionForConditionalGeneration(cfg).save_pretrained(path)
    return Path(path)


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


# Text the Qwen3-VL timestamps ("<2.5 seconds>") and InternVL's frame labels ("Frame3:") tokenise into, so that a
# tiny checkpoint's prompt holds real, distinct tokens there rather than <unk>. The single letters serve Qwen3.5,
# whose tokenizer class transformers picks by model type and rebuilds as a BPE over this vocabulary (no merges:
# one token per character).
TIMING_WORDS = ([str(i) for i in range(100)] + ["seconds", "<", ">", "."] + [f"Frame{i}" for i in range(1, 65)]
                + list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"))


def _word_tokenizer(specials: list[str], extra: dict[str, str], more_specials: list[str], template: str):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + specials + sorted(set(WORDS + TIMING_WORDS)))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<pad>", unk_token="<unk>",
                                  extra_special_tokens=extra)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", *more_specials]})
    tok.chat_template = template
    return tok


def build_qwen3_vl(path: str | Path, *, version: str = "3", vision_width: int = 32, vision_layers: int = 3,
                   text_width: int = 64, text_layers: int = 4, max_pixels: int = 16 * 128 * 96,
                   seed: int = 0) -> Path:
    """Save a random-weight Qwen3-VL (version "3", DeepStack at vision layers 0 and 1), Qwen3-VL-MoE ("3-moe") or
    Qwen3.5 ("3.5": no DeepStack, Gated-DeltaNet + attention text layers) with its processor to `path`."""
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    path = Path(path)
    tok = _word_tokenizer(QWEN_SPECIALS, {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
                          ["<|vision_start|>", "<|vision_end|>"], QWEN_TEMPLATE)
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    heads = 4
    half = text_width // heads // 2
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_interleaved": True,
            "mrope_section": [half - 2 * (half // 3), half // 3, half // 3]}
    text = dict(vocab_size=len(tok), hidden_size=text_width, intermediate_size=2 * text_width,
                num_hidden_layers=text_layers, num_attention_heads=heads, num_key_value_heads=2,
                head_dim=text_width // heads, max_position_embeddings=4096, rope_parameters=rope,
                tie_word_embeddings=False, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    vision = dict(depth=vision_layers, hidden_size=vision_width, intermediate_size=2 * vision_width, num_heads=2,
                  patch_size=16, spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=text_width,
                  num_position_embeddings=64, in_channels=3)
    common = dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                  vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(seed)
    if version == "3.5":
        from transformers import Qwen3_5Config, Qwen3_5ForConditionalGeneration

        text.update(layer_types=["linear_attention", "full_attention"] * (text_layers // 2), linear_conv_kernel_dim=2,
                    linear_key_head_dim=8, linear_value_head_dim=8, linear_num_key_heads=2, linear_num_value_heads=4)
        text["rope_parameters"] = {**rope, "partial_rotary_factor": 1.0}
        model = Qwen3_5ForConditionalGeneration(Qwen3_5Config(vision_config=vision, text_config=text, **common))
    elif version in ("3", "3-moe"):
        vision["deepstack_visual_indexes"] = [0, 1]
        if version == "3":
            from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

            model = Qwen3VLForConditionalGeneration(Qwen3VLConfig(vision_config=vision, text_config=text, **common))
        else:
            from transformers import Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration

            text.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=text_width, decoder_sparse_step=1)
            model = Qwen3VLMoeForConditionalGeneration(Qwen3VLMoeConfig(vision_config=vision, text_config=text,
                                                                        **common))
    else:
        raise ValueError(f"unknown Qwen3 version {version!r}")
    model.eval()
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    size = {"shortest_edge": 32 * 32, "longest_edge": max_pixels}
    processor = Qwen3VLProcessor(image_processor=Qwen2VLImageProcessor(patch_size=16, merge_size=2, size=size),
                                 video_processor=Qwen3VLVideoProcessor(patch_size=16, merge_size=2, size=size),
                                 tokenizer=tok, chat_template=QWEN_TEMPLATE)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    processor.save_pretrained(path)
    return path


INTERNVL_SPECIALS = ["<img>", "</img>", "<IMG_CONTEXT>"]
INTERNVL_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}<video>\n{% elif part['type'] == 'image' %}<IMG_CONTEXT>\n"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_internvl(path: str | Path, *, image_size: int = 64, patch_size: int = 8, vision_width: int = 32,
                   vision_layers: int = 2, text_width: int = 64, text_layers: int = 2, seed: int = 0) -> Path:
    """Save a random-weight InternVL (HF format: InternViT with CLS + pixel shuffle + Qwen3 text) with its processor:
    (image_size / patch_size)^2 patches per frame, 2x2 pixel-shuffled into a quarter as many tokens."""
    from transformers import (GotOcr2ImageProcessor, InternVLConfig, InternVLForConditionalGeneration,
                              InternVLProcessor, InternVLVideoProcessor)

    path = Path(path)
    tok = _word_tokenizer(INTERNVL_SPECIALS, {"start_image_token": "<img>", "end_image_token": "</img>",
                                              "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"},
                          [], INTERNVL_TEMPLATE)
    config = InternVLConfig(
        vision_config=dict(hidden_size=vision_width, num_hidden_layers=vision_layers, num_attention_heads=2,
                           intermediate_size=2 * vision_width, image_size=image_size, patch_size=patch_size,
                           use_qk_norm=True, norm_type="layer_norm"),
        text_config=dict(model_type="qwen3", vocab_size=len(tok), hidden_size=text_width,
                         intermediate_size=2 * text_width, num_hidden_layers=text_layers, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=text_width // 4, max_position_embeddings=4096,
                         tie_word_embeddings=False, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id),
        image_token_id=tok.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=(image_size // patch_size) ** 2 // 4, downsample_ratio=0.5, vision_feature_layer=-1,
        vision_feature_select_strategy="default", tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    size = {"height": image_size, "width": image_size}
    processor = InternVLProcessor(image_processor=GotOcr2ImageProcessor(size=size, crop_to_patches=False),
                                  video_processor=InternVLVideoProcessor(size=size), tokenizer=tok,
                                  image_seq_length=config.image_seq_length, chat_template=INTERNVL_TEMPLATE)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    processor.save_pretrained(path)
    return path
