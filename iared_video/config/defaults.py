"""Default configuration: every key the project reads, each with a comment.

PySlowFast convention: a yaml file is merged over these defaults, trailing
``KEY VALUE`` options are merged last, then ``validate`` checks the result once.

Options that exist for the synthetic sets (datasets/SYNTHETIC.md, docs/METHODS.md): their defaults are the
paper's (or upstream TimeSformer's) behaviour, and only configs/Synthetic and the main job set them:
MODEL.PATCH_FRAMES, MODEL.PATCH_FRAMES_INFLATION, MODEL.STEM_CHANNELS, MODEL.POS_EMBED_INIT_STD,
MODEL.TIME_EMBED_INIT_STD, IARED.FIRST_DROP_GROUP, IARED.LAST_DROP_GROUP, IARED.DECISION, IARED.REWARD_NORMALIZER,
IARED.REWARD_OUTCOME, IARED.REINFORCE_SAMPLES, IARED.REINFORCE_BASELINE, IARED.INTERPRETER_HIDDEN,
IARED.INTERPRETER_INPUT, IARED.INTERPRETER_INIT_SCORE. What they did on those sets is in docs/experiment_log.md.
"""

from fvcore.common.config import CfgNode

#: Where the synthetic sets are written and read by default (tools/make_synthetic.py, tools/main_job.py).
SYNTHETIC_DATA_DIRS = {"video": "./data/synthetic", "image": "./data/synthetic_images"}

_C = CfgNode()

# ---------------------------------------------------------------------------
# Top level.
# ---------------------------------------------------------------------------
# Number of processes per machine (GPUs on a GPU machine, CPU processes with gloo otherwise).
_C.NUM_GPUS = 1
# Number of machines taking part in the job.
_C.NUM_SHARDS = 1
# Index of this machine among NUM_SHARDS.
_C.SHARD_ID = 0
# Where logs, checkpoints, results and visualisations go.
_C.OUTPUT_DIR = "./output"
# Seed for python, numpy and torch random generators.
_C.RNG_SEED = 0
# Print a training log line every LOG_PERIOD iterations.
_C.LOG_PERIOD = 10
# Log level of the package's loggers: "INFO" (default) or "DEBUG" (also keeps the traceback of a user error
# in the tools; the environment variable LOG_LEVEL=DEBUG does the same), "WARNING", "ERROR".
_C.LOG_LEVEL = "INFO"
# Distributed backend: "nccl" (GPU), "gloo" (CPU); "auto" picks by device.
_C.DIST_BACKEND = "auto"
# Device to run on: "auto" (cuda if available), "cpu" or "cuda".
_C.DEVICE = "auto"

# ---------------------------------------------------------------------------
# Model.
# ---------------------------------------------------------------------------
_C.MODEL = CfgNode()
# Model family from MODEL_REGISTRY: "timesformer" (video, see ATTENTION_TYPE) or "deit" (image, via timm).
_C.MODEL.MODEL_NAME = "timesformer"
# timm architecture name for the "deit" family (any timm ViT/DeiT, distilled ones too).
_C.MODEL.ARCH = "deit_small_patch16_224"
# Number of output classes.
_C.MODEL.NUM_CLASSES = 400
# Patch size in pixels (TimeSformer; the "deit" family takes it from ARCH).
_C.MODEL.PATCH_SIZE = 16
# Token width (TimeSformer).
_C.MODEL.EMBED_DIM = 768
# Number of transformer blocks (TimeSformer).
_C.MODEL.DEPTH = 12
# Attention heads per block (TimeSformer).
_C.MODEL.NUM_HEADS = 12
# MLP hidden width as a multiple of EMBED_DIM (TimeSformer).
_C.MODEL.MLP_RATIO = 4.0
# Dropout before the classification head.
_C.MODEL.DROPOUT_RATE = 0.0
# Stochastic depth rate (linearly increasing over blocks).
_C.MODEL.DROP_PATH_RATE = 0.0
# TimeSformer attention: "joint_space_time" (JointST, one attention over all tokens) or
# "divided_space_time" (divST, the architecture of the released TimeSformer checkpoints: temporal attention
# over each position's frames, then spatial attention within each frame; kept tokens only after a drop).
# Must match the checkpoint: divST files have blocks.*.temporal_attn / temporal_fc keys.
_C.MODEL.ATTENTION_TYPE = "joint_space_time"
# TimeSformer: frames each patch token embeds (a Conv3d of kernel (PATCH_FRAMES, PATCH_SIZE, PATCH_SIZE), stride 1
# in time: the token grid stays (T, h, w), each token sees its frame's neighbours and so the local motion at its
# patch). 1 is TimeSformer's per-frame embedding.
_C.MODEL.PATCH_FRAMES = 1
# How 2-d patch weights W (an image checkpoint) inflate to PATCH_FRAMES frames; a static clip embeds as W does under
# each. "mean_diff": W / k on every frame plus W times the window's central difference (-1 .. 1 over the window),
# so every token also carries the temporal derivative of the pre-trained features; "mean": W / k (I3D); "central":
# W on the token's own frame, zero elsewhere (ViViT). See docs/experiment_log.md, "Video model".
_C.MODEL.PATCH_FRAMES_INFLATION = "mean_diff"
# TimeSformer: widths of a convolutional stem in place of the linear patch embedding (Xiao et al., 2021): a Conv3d
# over PATCH_FRAMES frames that patchifies by PATCH_SIZE / 2^len, then a 3x3x3 stride-(1, 2, 2) Conv3d per further
# width and into EMBED_DIM, BatchNorm + ReLU between; the token grid stays (T, h, w). [] = the linear embedding
# (TimeSformer). A pre-trained checkpoint's linear patch weights do not fit a stem: it starts from its own init,
# or from tools/distill_stem.py (regressed onto the checkpoint's linear embedding first; experiment_log.md).
_C.MODEL.STEM_CHANNELS = []
# Initial std of the learned spatial positional embedding. 0.02 is timm/TimeSformer's, made for
# pre-trained starts; from scratch on small data a larger std lets a ViT learn positions (the from-scratch
# control of tools/main_job.py sets 1.0).
# Drawn with timm's trunc_normal_, which cuts at +-2 (so stds above 1 are clipped hard).
_C.MODEL.POS_EMBED_INIT_STD = 0.02
# Initial std of the TimeSformer temporal embedding (0 = zeros, as TimeSformer, so that an image
# checkpoint starts out unchanged; from scratch, frames are then indistinguishable at the start).
_C.MODEL.TIME_EMBED_INIT_STD = 0.0
# Initial weights of the model, loaded by build_model wherever a model is built (training, testing and every tool):
# ImageNet ViT/DeiT .pth (inflated to TimeSformer for video), TimeSformer .pyth, or ours; "" for none. The dense
# model an IA-RED^2 curriculum (or a fixed-ratio / DynamicViT fine-tune) starts from is TRAIN.CHECKPOINT_FILE_PATH.
_C.MODEL.PRETRAINED = ""

# ---------------------------------------------------------------------------
# Method.
# ---------------------------------------------------------------------------
_C.METHOD = CfgNode()
# The token-reduction method, a name of the registry in iared_video/methods/ (docs/METHODS.md): "dense",
# "iared" (IA-RED^2, settings in IARED), "iared_gumbel" (its Appendix D variant, IARED plus GUMBEL),
# "dynamicvit" (DYNAMICVIT), "tome" (TOME), "evit" (EVIT), or one of the paper's fixed-ratio baselines
# "drop_random", "drop_attention", "drop_temporal_diff" (DROP).
_C.METHOD.NAME = "iared"

# ---------------------------------------------------------------------------
# IA-RED^2 (Pan et al., NeurIPS 2021), METHOD.NAME iared (and iared_gumbel, with GUMBEL).
# ---------------------------------------------------------------------------
_C.IARED = CfgNode()
# D: number of block groups, each opened by a policy (dense and the fixed-ratio drops use the same grouping);
# must divide the model depth.
_C.IARED.NUM_GROUPS = 1
# First group (1-based) whose interpreter may drop tokens; groups before it keep every token and train no
# interpreter. 1 is the paper (input level); a later start suits a backbone whose input tokens do not tell object
# from background linearly (DynamicViT prunes only after block 3).
_C.IARED.FIRST_DROP_GROUP = 1
# Last group (1-based) whose interpreter may drop tokens; 0 = IARED.NUM_GROUPS (the paper: every group). Later
# groups keep what they are given and train no interpreter.
_C.IARED.LAST_DROP_GROUP = 0
# Inference: a patch token whose informative score is below THRESHOLD is dropped.
_C.IARED.THRESHOLD = 0.5
# IA-RED^2's deterministic keep rule (inference and the self-critical baseline): "threshold" (the paper: keep where
# I >= THRESHOLD) or "expected_count" (each sample keeps its round(sum_i I_i) highest-scored tokens, the number a
# Bernoulli(I) sample keeps on average, so the decision deployed keeps as many tokens as the ones REINFORCE trained).
_C.IARED.DECISION = "threshold"
# Reward for a wrong prediction is -TAU (Eq. 2); larger TAU keeps more tokens. 1.5 is the paper's headline row.
_C.IARED.TAU = 1.5
# Efficiency term of the reward: "square" gives 1 - (kept/N)^2 (paper), "linear" gives 1 - kept/N.
_C.IARED.REWARD = "square"
# Denominator N of the efficiency term: "entering" (the paper: the tokens entering interpreter j) or "original"
# (the patch tokens of the input, for every group). Group 1: the same either way.
_C.IARED.REWARD_NORMALIZER = "entering"
# What "correct" is in R(u): "prediction" (the paper: the argmax is the label, R = efficiency, else -TAU) or
# "probability" (a departure: p, the softmax probability of the label, R = p * efficiency - (1 - p) * TAU, the
# expected reward of a classifier that samples its prediction from its softmax, not the paper's argmax rule).
_C.IARED.REWARD_OUTCOME = "prediction"
# Decisions u sampled per input in each REINFORCE step (the input's batch row repeated K times). 1 is the paper.
# K > 1 averages K policy gradients per input for K cheap forwards (no backward through the backbone).
_C.IARED.REINFORCE_SAMPLES = 1
# Baseline subtracted from R(u): "greedy" is the paper's self-critical R(u_hat) of the threshold decision;
# "leave_one_out" (needs REINFORCE_SAMPLES >= 2) the mean reward of the input's other samples, which stays a
# fair baseline when the greedy decision is far worse than the samples (an untrained interpreter's threshold
# keeps correlated tokens: all of one colour, say).
_C.IARED.REINFORCE_BASELINE = "greedy"
# Heads of the multi-head interpreter.
_C.IARED.INTERPRETER_HEADS = 4
# Width of each interpreter head's query/key maps.
_C.IARED.INTERPRETER_DIM = 64
# 0: F_q is linear (the paper). W > 0: the tokens first pass a shared Linear(C, W) + GELU, so a score can be a
# non-linear function of the token (motion energy |x_t+1 - x_t-1| is not linear in the pixels).
_C.IARED.INTERPRETER_HIDDEN = 0
# What the first group's interpreter scores: "tokens" (the paper: the tokens entering the group, positional and
# temporal embedding added), "content" (the patch embedding before them, what temporal_diff compares) or
# "difference" (video: that embedding minus the same patch's one frame earlier, the vector whose norm
# temporal_diff ranks by). Later groups always score their tokens.
_C.IARED.INTERPRETER_INPUT = "tokens"
# Every token's informative score when the interpreters are built, i.e. the keep rate REINFORCE first samples
# at (methods/iared/interpreter.py). The paper does not say; 0.5 is the zero-bias start.
_C.IARED.INTERPRETER_INIT_SCORE = 0.5
# Interpreter epochs per group in the curriculum (Alg. 1 step a).
_C.IARED.INTERPRETER_EPOCHS = 5
# Backbone fine-tuning epochs per group in the curriculum (Alg. 1 step b).
_C.IARED.BACKBONE_EPOCHS = 1
# Learning rate of the interpreter stages.
_C.IARED.INTERPRETER_LR = 2.5e-3
# Optimiser of the interpreter stages: "sgd", "adam" or "adamw" ("" uses SOLVER.OPTIMIZING_METHOD).
_C.IARED.INTERPRETER_OPTIMIZER = ""
# Weight decay of the interpreter stages.
_C.IARED.INTERPRETER_WEIGHT_DECAY = 0.0

# ---------------------------------------------------------------------------
# Gumbel IA-RED^2 (the paper's Appendix D), METHOD.NAME iared_gumbel: the IARED interpreters' "sample" decision is
# a straight-through Gumbel sample and the whole model trains end-to-end with cross-entropy plus a keep-ratio term
# in one stage of SOLVER.MAX_EPOCH epochs (no REINFORCE curriculum).
# ---------------------------------------------------------------------------
_C.GUMBEL = CfgNode()
# Temperature of the straight-through Gumbel decision.
_C.GUMBEL.TAU = 1.0
# Keep-ratio target rho: an MSE term pulls each sample's fraction of patch tokens kept after group j (1-based)
# towards rho^j, as DynamicViT does (cross-entropy alone would keep every token).
_C.GUMBEL.KEEP_RATE = 0.7
# Weight of that keep-ratio MSE (mean over groups) in the loss; 0 turns it off.
_C.GUMBEL.RATIO_WEIGHT = 2.0

# ---------------------------------------------------------------------------
# The paper's fixed-ratio baselines, METHOD.NAME drop_random, drop_attention, drop_temporal_diff: drop RATIO of
# the patch tokens at the input, lowest-scored first.
# ---------------------------------------------------------------------------
_C.DROP = CfgNode()
# Fraction of patch tokens dropped at the input.
_C.DROP.RATIO = 0.3
# 0-based block whose head-averaged class-token attention scores the patches for drop_attention and the
# raw-attention heatmap (tools/eval_heatmaps.py); earlier blocks run on every token first. 1 is the paper's
# Block_1, the second block (Fig. 3; Table 5 compares Block_0, Block_1, Block_2 and picks Block_1).
_C.DROP.ATTENTION_BLOCK = 1

# ---------------------------------------------------------------------------
# Data.
# ---------------------------------------------------------------------------
_C.DATA = CfgNode()
# Data set name from DATASET_REGISTRY: "kinetics" (video CSV) or "imagenet" (class folders).
_C.DATA.DATASET = "kinetics"
# Folder holding {train,val,test}.csv (video) or train/ and val/ (images).
_C.DATA.PATH_TO_DATA_DIR = SYNTHETIC_DATA_DIRS["video"]
# Prefix joined to every path in the CSV files.
_C.DATA.PATH_PREFIX = ""
# Separator between path and label in the CSV files.
_C.DATA.PATH_LABEL_SEPARATOR = " "
# Class-name file inside PATH_TO_DATA_DIR ("" for none): json {name: id} or one name per line.
_C.DATA.CLASS_NAMES_FILE = "classnames.json"
# Frames per clip.
_C.DATA.NUM_FRAMES = 8
# Stride between sampled frames, in frames at TARGET_FPS.
_C.DATA.SAMPLING_RATE = 32
# Frame rate the sampling rate refers to.
_C.DATA.TARGET_FPS = 30
# Which frames a clip takes: "clip" (PySlowFast: NUM_FRAMES frames SAMPLING_RATE apart at TARGET_FPS, in a
# window at a random start or evenly spaced for test views) or "segment" (TSN, TimeSformer on SSv2: one
# frame from each of NUM_FRAMES equal segments of the whole video; SAMPLING_RATE and TARGET_FPS unused).
_C.DATA.TEMPORAL_SAMPLING = "clip"
# Decoder: "decord" or "pyav"; the other one is tried per file when the first fails.
_C.DATA.DECODING_BACKEND = "decord"
# Train short-side jitter range [min, max] in pixels.
_C.DATA.TRAIN_JITTER_SCALES = [256, 320]
# Train crop size (square).
_C.DATA.TRAIN_CROP_SIZE = 224
# Test/val crop size (square); test frames are resized so the short side equals it.
_C.DATA.TEST_CROP_SIZE = 224
# Random horizontal flip at training time (video and image).
_C.DATA.RANDOM_FLIP = True
# Input channels.
_C.DATA.INPUT_CHANNEL_NUM = 3
# Per-channel normalisation mean (RGB, 0..1 scale).
_C.DATA.MEAN = [0.45, 0.45, 0.45]
# Per-channel normalisation std.
_C.DATA.STD = [0.225, 0.225, 0.225]
# Decode attempts of one sample before it is substituted (train/val only).
_C.DATA.NUM_RETRIES = 3
# Other items tried in a row for one failing train/val sample before giving up with an error (a broken data set).
_C.DATA.MAX_SUBSTITUTIONS = 10
# Try the other decoding backend on a file the first one cannot read (logged).
_C.DATA.DECODING_FALLBACK = True
# Decoder threads per video (0: the decoder chooses); keep 1 when several loader workers share the CPUs.
_C.DATA.DECODING_THREADS = 1
# Image branch (timm create_transform): RandAugment policy for training, e.g. "rand-m9-mstd0.5-inc1" ("" off).
_C.DATA.IMAGE_AUTO_AUGMENT = ""
# Image branch: colour-jitter strength for training (0.0 off; ignored when IMAGE_AUTO_AUGMENT is set).
_C.DATA.IMAGE_COLOR_JITTER = 0.0
# Image branch: random-erasing probability for training (0.0 off).
_C.DATA.IMAGE_RE_PROB = 0.0
# Image branch: area range of the training RandomResizedCrop (DeiT's [0.08, 1.0]; a small object
# needs a larger lower bound, or most crops miss it).
_C.DATA.IMAGE_SCALE = [0.08, 1.0]
# Image branch: eval resize is TEST_CROP_SIZE / IMAGE_CROP_PCT, then a centre crop (0.875: 256 -> 224).
_C.DATA.IMAGE_CROP_PCT = 0.875
# Image branch: resize interpolation ("bicubic" as DeiT, "bilinear", ...).
_C.DATA.IMAGE_INTERPOLATION = "bicubic"

# ---------------------------------------------------------------------------
# Data loader.
# ---------------------------------------------------------------------------
_C.DATA_LOADER = CfgNode()
# Worker processes per loader.
_C.DATA_LOADER.NUM_WORKERS = 2
# Pin host memory (only used when running on a GPU).
_C.DATA_LOADER.PIN_MEMORY = True

# ---------------------------------------------------------------------------
# Training.
# ---------------------------------------------------------------------------
_C.TRAIN = CfgNode()
# Run training.
_C.TRAIN.ENABLE = False
# Samples per process per step.
_C.TRAIN.BATCH_SIZE = 8
# Effective batch across processes and accumulation steps (0: BATCH_SIZE x world size).
_C.TRAIN.GLOBAL_BATCH_SIZE = 0
# Evaluate on the val split every EVAL_PERIOD epochs.
_C.TRAIN.EVAL_PERIOD = 1
# Save a checkpoint every CHECKPOINT_PERIOD epochs.
_C.TRAIN.CHECKPOINT_PERIOD = 1
# Also save every CHECKPOINT_ITER_PERIOD iterations (0: off).
_C.TRAIN.CHECKPOINT_ITER_PERIOD = 0
# Resume from the newest checkpoint in OUTPUT_DIR/checkpoints if there is one.
_C.TRAIN.AUTO_RESUME = True
# The dense model training starts from ("" for none): the IA-RED^2 curriculum, fixed-ratio and DynamicViT runs
# fine-tune it. Loaded after MODEL.PRETRAINED (training only), so it overwrites every tensor both hold; formats as
# MODEL.PRETRAINED. A resumed run (TRAIN.AUTO_RESUME) loads it too (DynamicViT's teacher is a copy of it), then
# continues from its own newest checkpoint.
_C.TRAIN.CHECKPOINT_FILE_PATH = ""
# Mixed precision on GPU.
_C.TRAIN.MIXED_PRECISION = False
# Autocast dtype with MIXED_PRECISION: "bfloat16" or "float16" (float16 adds a GradScaler).
_C.TRAIN.AMP_DTYPE = "bfloat16"

# ---------------------------------------------------------------------------
# Optimiser and schedule.
# ---------------------------------------------------------------------------
_C.SOLVER = CfgNode()
# "sgd", "adam" or "adamw".
_C.SOLVER.OPTIMIZING_METHOD = "sgd"
# Peak learning rate.
_C.SOLVER.BASE_LR = 2.5e-3
# Learning-rate schedule: "cosine" or "constant".
_C.SOLVER.LR_POLICY = "cosine"
# Final learning rate of the cosine schedule.
_C.SOLVER.COSINE_END_LR = 0.0
# Linear warm-up length in epochs.
_C.SOLVER.WARMUP_EPOCHS = 0.0
# Epochs of plain training (dense and fixed-ratio policies).
_C.SOLVER.MAX_EPOCH = 15
# SGD momentum.
_C.SOLVER.MOMENTUM = 0.9
# Nesterov momentum for SGD.
_C.SOLVER.NESTEROV = True
# Weight decay.
_C.SOLVER.WEIGHT_DECAY = 1e-4
# Gradient clipping by global norm (0: off).
_C.SOLVER.CLIP_GRAD_NORM = 0.0

# ---------------------------------------------------------------------------
# Testing.
# ---------------------------------------------------------------------------
_C.TEST = CfgNode()
# Run testing.
_C.TEST.ENABLE = False
# Samples per process per test step.
_C.TEST.BATCH_SIZE = 8
# Temporal views per video.
_C.TEST.NUM_ENSEMBLE_VIEWS = 1
# Spatial crops per temporal view: 1 (centre) or 3 (left/centre/right, top/centre/bottom on portrait).
_C.TEST.NUM_SPATIAL_CROPS = 3
# Weights to test ("" for the newest checkpoint in OUTPUT_DIR, else the trained/initial model).
_C.TEST.CHECKPOINT_FILE_PATH = ""
# Split file to test on.
_C.TEST.SPLIT = "test"

# ---------------------------------------------------------------------------
# Visualisation.
# ---------------------------------------------------------------------------
_C.VISUALIZE = CfgNode()
# Run the visualisation stage.
_C.VISUALIZE.ENABLE = False
# Input: a video, an image, a folder or a split CSV ("" for the test split).
_C.VISUALIZE.INPUT = ""
# Maximum number of inputs visualised.
_C.VISUALIZE.MAX_INPUTS = 8
# Heatmap upsampling from the patch grid to the input: "nearest" (patch blocks) or "bilinear".
_C.VISUALIZE.UPSAMPLE = "nearest"
# Opacity of the heatmap over the frame, in [0, 1].
_C.VISUALIZE.ALPHA = 0.5
# Animation written for video inputs: "gif" (Pillow), "mp4" (PyAV, H.264) or "none".
_C.VISUALIZE.ANIMATION = "gif"
# Frames per second of the animation.
_C.VISUALIZE.FPS = 4.0
# Heatmap binarisation for segmentation metrics (tools/eval_heatmaps.py): "mean", "fixed" or "otsu".
_C.VISUALIZE.BINARIZE = "mean"
# Threshold of the "fixed" binarisation rule (maps min-max normalised to [0, 1]).
_C.VISUALIZE.BINARIZE_THRESHOLD = 0.5

# ---------------------------------------------------------------------------
# Benchmark.
# ---------------------------------------------------------------------------
_C.BENCHMARK = CfgNode()
# Run the throughput benchmark stage.
_C.BENCHMARK.ENABLE = False
# Batch sizes to time.
_C.BENCHMARK.BATCH_SIZES = [1, 16]
# Untimed warm-up iterations.
_C.BENCHMARK.WARMUP_ITERS = 3
# Timed iterations (median reported).
_C.BENCHMARK.NUM_ITERS = 10
# Precisions to time: "fp32", "bf16" (autocast; CPU too), "fp16" (autocast; CUDA).
_C.BENCHMARK.PRECISIONS = ["fp32"]
# IA-RED^2 thresholds to time as they are (keep counts then follow the interpreter; [] for none).
_C.BENCHMARK.THRESHOLDS = []
# Controlled-keep targets: each sample keeps the top-scored r' of its patches, the r' of a batch spread
# evenly over [r - spread, r + spread] in shuffled order (their mean is r unless that range is clipped to
# [0.01, 1]).
_C.BENCHMARK.KEEP_RATIOS = [0.5, 0.7]
# Half-width of the per-sample keep-ratio draw around each KEEP_RATIOS target.
_C.BENCHMARK.KEEP_SPREAD = 0.1
# How controlled keeps spread over groups: "geometric" (cumulative r^((j+1)/D)) or "first" (all at group 0).
_C.BENCHMARK.KEEP_SCHEDULE = "geometric"
# Methods (METHOD.NAME values) also timed at each KEEP_RATIOS target besides controlled-keep IA-RED^2: any of
# "drop_random", "drop_attention", "drop_temporal_diff", "dynamicvit", "tome", "evit" (untrained predictors and
# training-free reducers set to the target).
_C.BENCHMARK.METHODS_AT_KEEP = ["drop_random"]
# GMACs budgets (fractions of the dense model's GMACs): IA-RED^2 (controlled keep) and METHODS_AT_KEEP again,
# each set where it costs the budget (bisection over its knob, or its keep target where the method has no
# configured variant; a method that cannot go as low runs at its floor).
_C.BENCHMARK.GMACS_BUDGETS = []
# Split whose first batch is the input ("" for generated input).
_C.BENCHMARK.DATA_SPLIT = ""
# Linear layers on CPU: "aten" (torch's default BLAS path) or "onednn" (fp32 only; iared_video/models/onednn.py).
# With "onednn" every variant uses it, an aten dense row is added, and ratios stay against the oneDNN dense.
_C.BENCHMARK.CPU_LINEAR = "aten"

# ---------------------------------------------------------------------------
# DynamicViT (Rao et al., 2021), METHOD.NAME dynamicvit.
# ---------------------------------------------------------------------------
_C.DYNAMICVIT = CfgNode()
# Indices of the blocks a prediction module runs before (strictly increasing, in (0, depth)). [] (default): a
# quarter, a half and three quarters of the depth, floor(k depth / 4) for k = 1, 2, 3 (methods.base.depth_quarters):
# [3, 6, 9] on 12 blocks as in the paper, [1, 3, 4] on 6.
_C.DYNAMICVIT.PRUNE_LOCATIONS = []
# rho: stage s keeps floor(rho^s * N) patch tokens at inference (N: the input's patch tokens; the official
# int(N * rho^s)); rho^s is the training keep-ratio target.
_C.DYNAMICVIT.KEEP_RATE = 0.7
# Weight of the keep-ratio MSE (mean over stages).
_C.DYNAMICVIT.RATIO_WEIGHT = 2.0
# Weight of the KL distillation from the frozen dense teacher's logits.
_C.DYNAMICVIT.DISTILL_WEIGHT = 0.5
# Weight of the token distillation (MSE to the teacher's final patch tokens over kept tokens).
_C.DYNAMICVIT.TOKEN_DISTILL_WEIGHT = 0.5
# Temperature of the training-time Gumbel-softmax keep/drop decision.
_C.DYNAMICVIT.GUMBEL_TAU = 1.0
# Learning rate of everything but the prediction modules, relative to SOLVER.BASE_LR (which the prediction modules
# use); DynamicViT trains the backbone 100x slower (0.01). How it applies: BACKBONE_LR_RULE.
_C.DYNAMICVIT.BACKBONE_LR_SCALE = 0.01
# "capped" (the official code): after the hold, the backbone lr is min(BACKBONE_LR_SCALE x BASE_LR, the predictors'
# lr), i.e. constant until the cosine falls below it; "scaled": BACKBONE_LR_SCALE x the predictors' lr at every step.
_C.DYNAMICVIT.BACKBONE_LR_RULE = "capped"
# Epochs at the start during which the backbone lr is held at 0 and only the prediction modules train (the official
# code: 5 of 30 epochs).
_C.DYNAMICVIT.BACKBONE_HOLD_EPOCHS = 5.0
# Parameters (by the last part of their name) that DynamicViT training never updates: the official code leaves
# cls_token and pos_embed out of the optimiser; time_embed is TimeSformer's temporal counterpart of pos_embed.
_C.DYNAMICVIT.FROZEN_PARAMS = ["cls_token", "pos_embed", "time_embed"]

# ---------------------------------------------------------------------------
# ToMe (Bolya et al., ICLR 2023), METHOD.NAME tome: bipartite soft matching merges r tokens per block
# between attention and MLP (methods/tome.py).
# ---------------------------------------------------------------------------
_C.TOME = CfgNode()
# r: patch tokens merged away in every block (at most half of those present); 0 is the dense model.
_C.TOME.R = 8
# A schedule instead of a constant r: one value per block ([] uses TOME.R everywhere).
_C.TOME.R_PER_LAYER = []
# Proportional attention: add log(size) of each key to the attention logits (size: patches a token stands for).
_C.TOME.PROP_ATTN = True

# ---------------------------------------------------------------------------
# EViT (Liang et al., ICLR 2022), METHOD.NAME evit: keep the top ceil(KEEP_RATE * n) tokens by class
# attention at LOCATIONS, fuse the rest into one token (methods/evit.py).
# ---------------------------------------------------------------------------
_C.EVIT = CfgNode()
# kappa: fraction of the non-class tokens kept at each reorganisation (1.0 changes nothing).
_C.EVIT.KEEP_RATE = 0.7
# 0-based blocks that reorganise, between their attention and MLP. [] (default): a quarter, a half and three quarters
# of the depth, floor(k depth / 4) for k = 1, 2, 3 (methods.base.depth_quarters): the paper's 4th, 7th, 10th of 12
# blocks ([3, 6, 9]), [1, 3, 4] on 6.
_C.EVIT.LOCATIONS = []
# Fuse the inattentive tokens into one token weighted by their class attention (False: drop them).
_C.EVIT.FUSE_TOKEN = True


def get_defaults() -> CfgNode:
    """Return a fresh copy of the defaults."""
    return _C.clone()

# ---------------------------------------------------------------------------
# Replaced keys: a config (a yaml file, options, or the config stored in a checkpoint) that still sets one of
# them is refused with the key and value that replace it.
# ---------------------------------------------------------------------------
#: Former ``IARED.POLICY`` value -> the ``METHOD.NAME`` that replaces it.
FORMER_POLICIES = {"none": "dense", "interpreter": "iared", "random": "drop_random", "attention": "drop_attention",
                   "temporal_diff": "drop_temporal_diff", "dynamicvit": "dynamicvit", "tome": "tome", "evit": "evit"}
#: Former key -> the key that replaces it.
FORMER_KEYS = {"IARED.GUMBEL_TAU": "GUMBEL.TAU", "IARED.GUMBEL_KEEP_RATE": "GUMBEL.KEEP_RATE",
               "IARED.GUMBEL_RATIO_WEIGHT": "GUMBEL.RATIO_WEIGHT", "IARED.DROP_RATIO": "DROP.RATIO",
               "IARED.ATTENTION_BLOCK": "DROP.ATTENTION_BLOCK"}
#: Every former key.
FORMER_KEY_NAMES = ("IARED.POLICY", "IARED.GUMBEL", *FORMER_KEYS)


def former_key_errors(flat: dict) -> list[str]:
    """What replaces each former key that ``flat`` (``{"A.B": value}``) sets, e.g.
    ``"IARED.POLICY interpreter is now METHOD.NAME iared"``."""
    errors = []
    if "IARED.POLICY" in flat:
        value = flat["IARED.POLICY"]
        errors.append(f"IARED.POLICY {value} is now METHOD.NAME {FORMER_POLICIES.get(value, '<a method name>')}")
    if flat.get("IARED.GUMBEL") is True:
        errors.append("IARED.GUMBEL True is now METHOD.NAME iared_gumbel (its settings: GUMBEL.*)")
    elif "IARED.GUMBEL" in flat:
        errors.append("IARED.GUMBEL is gone: METHOD.NAME names the method (iared_gumbel for the Gumbel variant)")
    errors += [f"{key} is now {new}" for key, new in FORMER_KEYS.items() if key in flat]
    return errors
