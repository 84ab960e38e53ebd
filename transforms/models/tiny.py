"""``mcie models tiny DIR``: tiny random-weight versions of every model family the real-model
pipeline uses, built from configs offline, saved with ``save_pretrained`` so they load back
through the same ``from_pretrained`` code path as real weights, plus ``DIR/models.yaml``.

Sizes follow transformers' and diffusers' own tests (32-wide, 1–2 layers). Tokenizers come from
in-memory vocabularies: offline, ``from_pretrained("<hub id>")`` of a tokenizer can silently
return an empty one, so nothing here names a hub id.

Written folders: ``vlm/`` (LLaVA planner), ``vlm-judge/`` (LLaVA judge, a louder output
layer), ``owlv2/`` (open-vocabulary detector), ``sam/`` (SamModel), ``inpaint/``
(StableDiffusionInpaintPipeline), ``instruct-pix2pix/`` (StableDiffusionInstructPix2PixPipeline,
for CIE-Bench baselines).
"""

from __future__ import annotations

import os
import string

import yaml

#: image side the tiny models' processors use
TINY_IMAGE = 32


def _torch_seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def char_tokenizer():
    """A character-level fast tokenizer for the tiny VLM: printable ASCII, ``<image>`` special.
    Character tokens let the JSON constraint steer every character."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<pad>": 3, "<image>": 4}
    for c in string.printable:
        if c not in "\r\x0b\x0c":
            vocab.setdefault(c, len(vocab))
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tk.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
        model_max_length=4096,
    )


def clip_tokenizer(max_length: int = 16):
    """A CLIP BPE tokenizer over the byte alphabet (no merges), built in memory."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab.setdefault(c, len(vocab))
    for c in chars:
        vocab.setdefault(c + "</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def build_vlm(path: str, seed: int = 0, layers: int = 2, hidden: int = 32, output_gain: float = 1.0) -> str:
    """A tiny LLaVA (CLIP vision tower + Llama) with its processor, saved to ``path``."""
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    _torch_seed(seed)
    tok = char_tokenizer()
    vision = CLIPVisionConfig(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        image_size=TINY_IMAGE,
        patch_size=8,
        projection_dim=hidden,
    )
    text = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    cfg = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    model = LlavaForConditionalGeneration(cfg).eval()
    # At init std 0.02 every logit is ~0 and every yes/no answer a coin flip (P ≈ 0.5 whatever
    # the question); a louder output layer lets a random judge's scores spread over (0, 1) and
    # depend on the wording, so thresholds split samples as they would with a real judge.
    with torch.no_grad():
        model.lm_head.weight.mul_(output_gain)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    image_proc = CLIPImageProcessor(
        size={"shortest_edge": TINY_IMAGE}, crop_size={"height": TINY_IMAGE, "width": TINY_IMAGE}
    )
    chat = (
        "{% for m in messages %}{{ m['role'].upper() }}: "
        "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>\n"
        "{% else %}{{ c['text'] }}{% endif %}"
        "{% endfor %}\n{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
    )
    proc = LlavaProcessor(
        image_processor=image_proc,
        tokenizer=tok,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token
        chat_template=chat,
    )
    model.save_pretrained(path)
    proc.save_pretrained(path)
    return path


def build_owlv2(path: str, seed: int = 0) -> str:
    """A tiny OWLv2 detector and processor."""
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    _torch_seed(seed)
    tok = clip_tokenizer(16)
    cfg = Owlv2Config(
        text_config={
            "vocab_size": len(tok),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
            "max_position_embeddings": 16,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
            "image_size": TINY_IMAGE,
            "patch_size": 8,
        },
        projection_dim=32,
    )
    Owlv2ForObjectDetection(cfg).eval().save_pretrained(path)
    image_proc = Owlv2ImageProcessor(size={"height": TINY_IMAGE, "width": TINY_IMAGE})
    Owlv2Processor(image_processor=image_proc, tokenizer=tok).save_pretrained(path)
    return path


def build_sam(path: str, seed: int = 0) -> str:
    """A tiny SAM (ViT image encoder, prompt encoder, mask decoder) and processor."""
    from transformers import SamConfig, SamImageProcessor, SamModel, SamProcessor

    _torch_seed(seed)
    size = 64
    cfg = SamConfig(
        vision_config={
            "hidden_size": 32,
            "output_channels": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": size,
            "patch_size": 8,
            "mlp_dim": 64,
            "window_size": 4,
            "global_attn_indexes": [0],
            "num_pos_feats": 8,
        },
        prompt_encoder_config={
            "hidden_size": 16,
            "image_size": size,
            "patch_size": 8,
            "mask_input_channels": 4,
        },
        mask_decoder_config={
            "hidden_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "mlp_dim": 32,
            "iou_head_hidden_dim": 16,
        },
    )
    SamModel(cfg).eval().save_pretrained(path)
    proc = SamProcessor(
        image_processor=SamImageProcessor(
            size={"longest_edge": size}, pad_size={"height": size, "width": size}
        )
    )
    proc.save_pretrained(path)
    return path


def _sd_parts(in_channels: int, seed: int):
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    _torch_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=8,
        in_channels=in_channels,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        norm_num_groups=32,
        sample_size=32,
    )
    tok = clip_tokenizer(16)
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=1,
            num_attention_heads=4,
            max_position_embeddings=16,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    sched = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return dict(
        unet=unet,
        vae=vae,
        text_encoder=text,
        tokenizer=tok,
        scheduler=sched,
        safety_checker=None,
        feature_extractor=None,
    )


def build_inpaint(path: str, seed: int = 0) -> str:
    """A tiny Stable Diffusion inpainting pipeline (UNet with 9 input channels)."""
    from diffusers import StableDiffusionInpaintPipeline

    pipe = StableDiffusionInpaintPipeline(**_sd_parts(9, seed), requires_safety_checker=False)
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def build_instruct_pix2pix(path: str, seed: int = 0) -> str:
    """A tiny InstructPix2Pix pipeline (UNet with 8 input channels), for CIE-Bench."""
    from diffusers import StableDiffusionInstructPix2PixPipeline

    pipe = StableDiffusionInstructPix2PixPipeline(**_sd_parts(8, seed), requires_safety_checker=False)
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def tiny_models_yaml(root: str) -> dict:
    """The models file pointing at the tiny models under ``root`` (CPU, float32)."""
    common = {"device": "cpu", "dtype": "float32"}
    return {
        # short strings and few edits keep a random model's plans small; sampling (seeded per
        # image) gives each photo its own plan; the strict parse fails some (a box under
        # min_box_area): failed with the raw text kept, as a real model's bad answers are.
        "planner": {
            "model": os.path.join(root, "vlm"),
            "batch_size": 4,
            "max_edits": 3,
            "max_target": 12,
            "max_sub": 24,
            "max_instruction": 40,
            "max_new_tokens": 420,
            "temperature": 1.0,
            "retries": 0,
            **common,
        },
        "grounder": {
            "detector": os.path.join(root, "owlv2"),
            "sam": os.path.join(root, "sam"),
            "batch_size": 4,
            **common,
        },
        "editor": {
            "model": os.path.join(root, "inpaint"),
            "steps": 2,
            "guidance_scale": 1.0,
            "size": 32,
            "batch_size": 4,
            **common,
        },
        # yes_bias centres this random judge's P(yes) near 0.5 so executed_min splits samples
        "judge": {
            "model": os.path.join(root, "vlm-judge"),
            "batch_size": 8,
            "executed_min": 0.5,
            "yes_bias": 1.0,
            **common,
        },
        "instruct_pix2pix": {"model": os.path.join(root, "instruct-pix2pix")},
        # `mcie edit --decomposer mllm --vlm models.yaml`: short strings keep a random model's
        # replies small; its greedy reply may hold an empty box, which the retries then replace
        "decomposer": {
            "model": os.path.join(root, "vlm"),
            "max_subs": 3,
            "max_text": 24,
            "max_new_tokens": 300,
            "retries": 3,
            **common,
        },
    }


def write_tiny_models(root: str, seed: int = 0) -> str:
    """Build every tiny model under ``root`` and write ``root/models.yaml``; returns its path."""
    os.makedirs(root, exist_ok=True)
    build_vlm(os.path.join(root, "vlm"), seed)
    build_vlm(os.path.join(root, "vlm-judge"), seed + 1, output_gain=40.0)
    build_owlv2(os.path.join(root, "owlv2"), seed)
    build_sam(os.path.join(root, "sam"), seed)
    build_inpaint(os.path.join(root, "inpaint"), seed)
    build_instruct_pix2pix(os.path.join(root, "instruct-pix2pix"), seed)
    path = os.path.join(root, "models.yaml")
    with open(path, "w") as fh:
        fh.write("# tiny random-weight models written by `mcie models tiny`; for tests and demos only\n")
        yaml.safe_dump(tiny_models_yaml(os.path.abspath(root)), fh, sort_keys=False)
    return path
