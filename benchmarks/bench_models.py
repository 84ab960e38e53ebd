"""Per-stage throughput of the real-model backends: plan (VLM, constrained JSON), ground
(OWLv2 + SAM), edit (inpainting, every sub-edit), judge (VLM yes/no scores).

    # CPU, tiny random models (what `mcie models tiny` writes):
    .venv/bin/python benchmarks/bench_models.py --images 8
    # GPU, real sizes with random weights built from configs (no downloads): an SD-1.5-size
    # inpainting UNet/VAE/CLIP-L text encoder, a ~2B LLaVA-style VLM (CLIP ViT-L/14-336 +
    # a 2048-wide 28-layer Llama), OWLv2-base and SAM-ViT-base default configs:
    python benchmarks/bench_models.py --device cuda --real-size --images 16

Every stage gets the same fixed 2-edit plan per image (a random planner's plans are mostly
cut off or invalid), so ground, edit and judge always get full work; the planner is timed on
its own for ``--plan-tokens`` new tokens per image under the JSON grammar. Prints one line per
stage and a JSON summary. Needs no Beam (it calls the role classes the handlers wrap).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))  # noqa: E402 (run from a checkout)

PLAN = (
    '{"edits":[{"type":"recolour","target":"the main object","instruction":"make the main object blue",'
    '"box":[250,250,500,500]},{"type":"add","target":"a small red ball","instruction":"add a red ball",'
    '"box":[50,700,200,200]}],"instruction":"Make the main object blue and add a small red ball."}'
)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def photos(n: int, short_side: int) -> list[np.ndarray]:
    from mcie.transforms.sources.images import ImageLoader, ImageSourceConfig, sample_photo_paths

    loader = ImageLoader(ImageSourceConfig(short_side=short_side))
    base = [loader.load(p).pixels for p in sample_photo_paths()]
    # one size per batch keeps the editor to one diffusion call per sub-edit
    h = min(b.shape[0] for b in base)
    w = min(b.shape[1] for b in base)
    return [base[i % len(base)][:h, :w].copy() for i in range(n)]


# -- model sets ------------------------------------------------------------------------------
def tiny_models(device: str, dtype: str):
    from mcie.transforms.models.grounder import load_grounder
    from mcie.transforms.models.inpaint_editor import load_inpaint
    from mcie.transforms.models.tiny import write_tiny_models
    from mcie.transforms.models.vlm import load_vlm

    root = tempfile.mkdtemp(prefix="mcie-tiny-")
    write_tiny_models(root)
    vlm = load_vlm(os.path.join(root, "vlm"), device, dtype)
    judge = load_vlm(os.path.join(root, "vlm-judge"), device, dtype)
    grounder = load_grounder(os.path.join(root, "owlv2"), os.path.join(root, "sam"), device, dtype)
    pipe = load_inpaint(os.path.join(root, "inpaint"), device, dtype)
    return vlm, judge, grounder, pipe, {"steps": 2, "size": 32, "short_side": 64}


def real_size_models(device: str, dtype: str):
    """Random-weight models at real sizes, built on the device from configs."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import (
        CLIPImageProcessor,
        CLIPTextConfig,
        CLIPTextModel,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        Owlv2Config,
        Owlv2ForObjectDetection,
        Owlv2ImageProcessor,
        Owlv2Processor,
        SamConfig,
        SamModel,
        SamProcessor,
    )

    from mcie.transforms.models.tiny import char_tokenizer, clip_tokenizer

    dt = getattr(torch, dtype)
    torch.set_default_dtype(dt)
    torch.manual_seed(0)
    with torch.device(device):
        tok = char_tokenizer()
        vision = CLIPVisionConfig(
            hidden_size=1024,
            intermediate_size=4096,
            num_hidden_layers=24,
            num_attention_heads=16,
            image_size=336,
            patch_size=14,
            projection_dim=768,
        )  # fmt: skip  (CLIP ViT-L/14-336)
        text = LlamaConfig(
            vocab_size=151_936,
            hidden_size=2048,
            intermediate_size=8192,
            num_hidden_layers=28,
            num_attention_heads=16,
            num_key_value_heads=8,
            max_position_embeddings=8192,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )  # fmt: skip  (~1.9B; Qwen2-VL-2B's vocabulary size)
        cfg = LlavaConfig(
            vision_config=vision, text_config=text, image_token_id=tok.convert_tokens_to_ids("<image>"),
            vision_feature_select_strategy="default", vision_feature_layer=-2,
        )  # fmt: skip
        vlm_model = LlavaForConditionalGeneration(cfg).eval()
        with torch.no_grad():
            vlm_model.lm_head.weight.mul_(40.0)  # see tiny.build_vlm: random logits otherwise ~0
        proc = LlavaProcessor(
            image_processor=CLIPImageProcessor(
                size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}
            ),
            tokenizer=tok, patch_size=14, vision_feature_select_strategy="default",
            num_additional_image_tokens=1,
            chat_template=(
                "{% for m in messages %}{{ m['role'].upper() }}: {% for c in m['content'] %}"
                "{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %}\n"
                "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
            ),
        )  # fmt: skip
        proc.tokenizer.padding_side = "left"
        # OWLv2 base/16 at 960 px (owlv2-base-patch16-ensemble's vision size)
        det = Owlv2ForObjectDetection(Owlv2Config(vision_config={"image_size": 960, "patch_size": 16})).eval()
        det_p = Owlv2Processor(image_processor=Owlv2ImageProcessor(), tokenizer=clip_tokenizer(16))
        sam = SamModel(SamConfig()).eval()  # SAM ViT-B at 1024 px
        sam_p = SamProcessor(image_processor=__import__("transformers").SamImageProcessor())
        unet = UNet2DConditionModel(in_channels=9, cross_attention_dim=768, sample_size=64)  # SD-1.5 inpaint
        vae = AutoencoderKL(
            block_out_channels=[128, 256, 512, 512],
            down_block_types=["DownEncoderBlock2D"] * 4,
            up_block_types=["UpDecoderBlock2D"] * 4,
            latent_channels=4,
            layers_per_block=2,
            sample_size=512,
        )
        te = CLIPTextModel(  # CLIP ViT-L/14 text tower (SD 1.5's)
            CLIPTextConfig(
                vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                num_attention_heads=12, max_position_embeddings=77, projection_dim=768,
            )
        )  # fmt: skip
        pipe = StableDiffusionInpaintPipeline(
            unet=unet, vae=vae, text_encoder=te, tokenizer=clip_tokenizer(77),
            scheduler=DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                    clip_sample=False, set_alpha_to_one=False, steps_offset=1),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )  # fmt: skip
        pipe.set_progress_bar_config(disable=True)
    torch.set_default_dtype(torch.float32)
    n = sum(p.numel() for p in vlm_model.parameters())
    n_unet = sum(p.numel() for p in unet.parameters())
    print(f"# real-size VLM: {n / 1e9:.2f}B parameters; UNet {n_unet / 1e6:.0f}M")
    vlm = (proc, vlm_model)
    return vlm, vlm, (det_p, det, sam_p, sam), pipe, {"steps": 20, "size": 512, "short_side": 512}


# -- timing ----------------------------------------------------------------------------------
def run(args) -> dict:
    import torch

    from mcie.records import EditSample
    from mcie.transforms.models.grounder import DetectorSamGrounder
    from mcie.transforms.models.inpaint_editor import EditorConfig, InpaintEditor
    from mcie.transforms.models.vlm_judge import VLMJudge, VLMJudgeConfig
    from mcie.transforms.models.vlm_planner import PlannerConfig, VLMPlanner, parse_plan

    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    build = real_size_models if args.real_size else tiny_models
    vlm, judge_vlm, grounder_parts, pipe, sizes = build(args.device, args.dtype)
    load_s = time.perf_counter() - t0
    if args.steps:
        sizes["steps"] = args.steps
    images = photos(args.images, sizes["short_side"])
    h, w = images[0].shape[:2]
    cfg = PlannerConfig(max_new_tokens=args.plan_tokens, retries=0, temperature=1.0, max_edits=3)
    planner = VLMPlanner(*vlm, cfg)
    grounder = DetectorSamGrounder(*grounder_parts)
    editor = InpaintEditor(pipe, EditorConfig(steps=sizes["steps"], size=sizes["size"], guidance_scale=7.5))
    judge = VLMJudge(*judge_vlm, VLMJudgeConfig())
    bs = args.batch_size

    def samples() -> list[EditSample]:
        return [
            EditSample(f"{i:020x}", f"img{i}", f"{i:032x}", im, None, "", parse_plan(PLAN, w, h, cfg)[1])
            for i, im in enumerate(images)
        ]

    def timed(name: str, fn, items: list, per_item: int = 1) -> dict:
        fn(items[: min(bs, len(items))])  # warm-up (kernels, caches)
        sync(args.device)
        t = time.perf_counter()
        for i in range(0, len(items), bs):
            fn(items[i : i + bs])
        sync(args.device)
        dt = time.perf_counter() - t
        r = {
            "stage": name,
            "images": len(items),
            "seconds": round(dt, 3),
            "images_per_s": round(len(items) / dt, 3),
        }
        if per_item > 1:
            r["sub_edits_per_s"] = round(len(items) * per_item / dt, 3)
        print(
            f"{name:8s} {r['images']:4d} images  {dt:8.2f} s  {r['images_per_s']:8.2f} images/s", flush=True
        )
        return r

    print(f"# device={args.device} real_size={args.real_size} images={len(images)} {w}x{h} batch={bs}")
    stages = args.stages.split(",")
    results = [timed("plan", lambda b: planner.plan(b), images)] if "plan" in stages else []
    s = samples()
    if "ground" in stages:
        results.append(timed("ground", grounder.ground, s, per_item=1))
    if "edit" in stages:
        results.append(timed("edit", editor.edit, s, per_item=2))
    if "judge" in stages:
        if s[0].tgt is None:
            for x in s:
                x.tgt = x.src.copy()
        results.append(timed("judge", judge.judge_batch, s, per_item=2))
    return {
        "device": args.device,
        "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        "real_size": args.real_size,
        "dtype": args.dtype,
        "image_size": [w, h],
        "batch_size": bs,
        "plan_tokens": args.plan_tokens,
        "editor_steps": sizes["steps"],
        "build_s": round(load_s, 1),
        "stages": results,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--real-size", action="store_true", help="real-size random models (for a GPU)")
    ap.add_argument(
        "--dtype", default=None, help="float32 / float16 / bfloat16 (default: f32 on cpu, bf16 on cuda)"
    )
    ap.add_argument("--images", type=int, default=8, help="images per stage (default 8)")
    ap.add_argument("--batch-size", type=int, default=4, help="images per model call (default 4)")
    ap.add_argument("--plan-tokens", type=int, default=300, help="max new tokens per plan (default 300)")
    ap.add_argument(
        "--steps", type=int, default=None, help="editor diffusion steps (default 2 tiny, 20 real)"
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads on cpu (default 1, as in a worker)")
    ap.add_argument("--stages", default="plan,ground,edit,judge", help="stages to time (comma list)")
    ap.add_argument("--json", default=None, help="also write the summary to this file")
    args = ap.parse_args()
    args.dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    summary = run(args)
    print(json.dumps(summary, sort_keys=True))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(summary, fh, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
