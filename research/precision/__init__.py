"""Lower precision for the hand pipeline's two models (issue 24), each candidate held to the gate against the
fp32 LiteRT path and timed against it in the same run.

    nice -n 19 python -m research.precision > precision.json        # stills, fixtures, timing (HGR_MODEL_PATH)
    nice -n 19 python -m research.precision --clips 100 > p.json    # and camera clips from 100 photos
    python -m research.precision --markdown p.json                  # the table in docs/accuracy.md

Needs ``ai-edge-quantizer`` for the int8 candidates (static ones included): not in the lock, so installed in a venv
of its own, never the project's (docs/accuracy.md "Lower precision" has the commands); and ``openvino`` for the
``ov_`` ones (the ``openvino`` extra). Each is imported only when a candidate needs it; a candidate whose package
is missing is reported as skipped.

Candidates, per model (palm detector, landmark model), each on one model with the other at fp32, and on both:

- ``int8_conv2d``: dynamic-range int8 (int8 weights per output channel, float activations quantized on the
  fly) on CONV_2D only, run by LiteRT as the service runs it (XNNPACK). The bundle's weights are float16
  constants behind DEQUANTIZE ops, which the quantizer leaves alone, so they are folded to float32 first
  (``fold_fp16``, exact). Depthwise convolutions stay float: their hybrid kernel is not XNNPACK's and runs
  about twice as slow as fp32 (measured while choosing; ``int8_all`` shows it); so do the landmark model's
  four FULLY_CONNECTED heads (``int8_conv`` shows why: in int8 they move the world landmarks the count is
  read from);
- ``int8_conv``: the same on CONV_2D and FULLY_CONNECTED;
- ``int8_all``: the quantizer's ``dynamic_wi8_afp32`` recipe as is (every supported op), after the fold;
- ``ov_f32``: OpenVINO's CPU plugin at f32: what the runtime alone changes, and the noise floor of the gate
  (its outputs differ from LiteRT's by ~1e-4 crop pixels, so the photos it flips are on a knife's edge);
- ``ov_bf16``: OpenVINO at ``INFERENCE_PRECISION_HINT=bf16`` (AMX/AVX512-BF16 on this CPU);
- ``ov_bf16_endsN``: the same, with the layers at both ends kept in f32: every layer up to and including the
  N-th convolution counted from the input, and every layer from the N-th last convolution or matmul before
  each output on (``keep_f32``; N = 1, 2, 4, 8). OpenVINO 2026.4's Python API cannot set the attribute
  that does this (a string under its rt_info key is ignored), so the model goes through IR: the ``precise``
  rt_info attribute (``ov::disable_fp16_compression``, which the CPU plugin also honours for bf16) is
  written into the IR's XML on those layers and the IR read back;
- ``int8_static``: static (full) int8, run by LiteRT/XNNPACK with its QS8 kernels: int8 weights per output
  channel and int8 activations per tensor (asymmetric), their ranges calibrated on the inputs the fp32 pipeline
  fed the model on half of the photos (``calibration_split``: half of each recording session, drawn with
  ``--calibration-seed``; the gate is reported on all photos and on the other half alone, "held-out"). The
  quantizer (``static_int8``) runs a model only through a signature and reads every tensor while calibrating,
  so the folded model loses the emptied float16 tensors (``prune_unused``) and gains a signature over its graph
  (``with_signature``); its input and outputs stay float (a QUANTIZE after the input, a DEQUANTIZE before
  each output) so the pipeline feeds it unchanged. Ops the quantizer does not support stay float between
  DEQUANTIZE and QUANTIZE: the palm detector's 31 PRELUs (ai-edge-quantizer 0.10.0 has no PRELU);
- ``int8_static_endsN``: the same, with the ops at both ends kept float as ``ov_bf16_endsN`` picks them (on
  the tflite graph, ``float_ends``: CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED are the heavy ops; N = 1,
  2, 4);
- ``int8_static_minmax``, ``int8_static_minmax_ends4``: the same two with each activation's range the extremes
  over the calibration inputs; the quantizer's own rule (the others) averages each input's min and max
  (0.95 old + 0.05 new), so values beyond saturate.

The gate (issue 24), each candidate against the fp32 LiteRT path (``research.engine_parity.compare``, with
``Detector.detect_bytes`` as the service answers a still, ``num_hands=2``, exposure retry on):

- stills (the labelled photos): finger counts agree on ≥ 99 % of photos; counted right on at least as many
  photos as fp32 minus one; median landmark gap ≤ 0.5 % (of the hand, stricter than of the crop); hands
  detected on as many photos ± 1;
- fixtures (tests/fixtures/landmarks.json, the fp32 landmarks the unit tests count): the candidate's count
  against the one the fixture's hand gives, per photo (fp32 itself is listed for scale);
- the control: fp32 on the photos as decoded, moved one pixel (``shifted_photos``): how many answers a
  change far smaller than a camera's noise moves, for scale;
- camera clips (``--clips N``): ``loadtest/clips.py`` one-hand clips of the first N photos the stills judge
  counts right, through the edge's stream path (tracking) as ``research/tracking.py`` runs them; counts
  agree with fp32's on ≥ 99 % of frames.

Timing: each model alone, one thread, on the crops the pipeline fed it on the first photos, candidates
interleaved round-robin with fp32 in the same process so a busy machine slows all alike; the ratio is fp32's
median over the candidate's (> 1: faster), with the ratio of p10s, steadier on a shared machine. Model bytes
are built from the bundle in memory and pinned by sha256 in the report (OpenVINO: of the IR it compiles,
node names left out, since it numbers them by a process-wide counter; and of the tflite it read).

The parts: ``variants`` (the candidates' names and what each is), ``tflite`` (the bundle's models rewritten:
float16 weights folded, unused tensors pruned, a signature, the ops kept float at both ends), ``quantize``
(ai-edge-quantizer's dynamic and static int8), ``candidates`` (a variant's model built and pinned, as a runner
of LiteRT or OpenVINO), ``harness`` (the service's pipeline on a candidate's models, and the inputs it feeds
them), ``calibration`` (which photos calibrate the static int8 candidates), ``gate`` (the figures a candidate is
held to, and the control), ``timing`` (the models timed round-robin), ``run`` (one run: the report),
``report`` (the report as the Markdown table), ``__main__`` (the command line).
"""
