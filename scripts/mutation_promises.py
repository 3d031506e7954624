"""Named mutations of the promise classes (issue 25; docs/testing.md, "Promise classes").

Each breaks the one line a class of promises rests on; the generated/property test of that class
(``tests/test_promises_<class>.py``) must kill it. Same format as ``scripts/mutation.py``'s list
(name, file, snippet found exactly once, replacement, tests, promise); ``mutation.py`` appends these.
"""
from __future__ import annotations

G = "tests/test_promises_gates.py"
JUDGE, REG = "dmsbuild/board/runner/judge.py", "dmsbuild/measure/regression.py"
BS, BST = "dmsbuild/measure/board_state.py", "tests/test_promises_board_state.py"
AGENT, PC = "dmsbuild/board/release_agent.py", "tests/test_power_cut.py"

PROMISES = [
    # ---------------------------------------------------------------- (a) every gate rule at its boundary
    ("promise-regression-point-ratio", REG, "confirmed=low > allowed and refused is None",
     "confirmed=ratio > allowed and refused is None", (G,),
     "a regression is confirmed only when the whole confidence interval is above the limit, never by the point ratio"),
    ("promise-regression-interval-edge", REG, "confirmed=low > allowed and refused is None",
     "confirmed=low >= allowed and refused is None", (G,),
     "an interval whose lower end sits on the limit is not wholly above it"),
    ("promise-control-width-slack", REG, "        if self.width > self.max_width:\n",
     "        if self.width > self.max_width * 1.5:\n", (G,),
     "an A/A control wider than MAX_CONTROL_WIDTH refuses the verdict"),
    ("promise-control-excludes-one-ignored", REG, "        if not self.ci_low <= 1.0 <= self.ci_high:\n",
     "        if not self.ci_low - 0.05 <= 1.0 <= self.ci_high + 0.05:\n", (G,),
     "an A/A control whose interval excludes 1.00 refuses the verdict"),
    ("promise-noisy-control-override-point", REG, "    if refused and min(low, low / control.ci_high) > allowed:",
     "    if refused and ratio / control.ci_high > allowed:", (G,),
     "a noisy control is overridden only by a slowdown past the limit divided by the control's upper end"),
    ("promise-labelled-drop-slack", JUDGE, "labelled_fp32 - labelled > limit.value + 1e-9:",
     "labelled_fp32 - labelled > limit.value + 1e-4:", (G,),
     "the labelled-accuracy drop fails just past max_accuracy_drop"),
    ("promise-cosine-floor-slack", JUDGE, "    if cosine is None or cosine < floor.value:\n",
     "    if cosine is None or cosine < floor.value - 1e-4:\n", (G,),
     "a mean cosine just under min_cosine fails"),
    ("promise-sqnr-floor-inclusive", JUDGE, "    if sqnr is not None and sqnr < floor.value:  # None: identical",
     "    if sqnr is not None and sqnr <= floor.value:  # None: identical", (G,),
     "an SQNR exactly at min_sqnr_db passes (a floor is the lowest value allowed)"),
    ("promise-latency-gate-inclusive", "dmsbuild/measure/gates.py", "        if ratio > max_ratio:\n",
     "        if ratio > max_ratio * (1 + 1e-4):\n", (G,),
     "a median just past max_latency_regression x the baseline fails the board's latency gate"),
    # ---------------------------------------------------------------- (b) every documented fallback exercised
    ("promise-unmeasurable-suspect-dropped", "dmsbuild/measure/bench.py",
     '            f.message += f"; not re-measured: {first_line(exc)}"\n            kept.append(f)\n',
     '            continue\n', ("tests/test_promises_fallbacks.py",),
     "a suspected regression that cannot be re-measured: the first run's verdict stands"),
    ("promise-host-driven-suspect-dropped", "dmsbuild/measure/bench.py",
     '                         f"not {runtimes[f.artifact]}"\n            kept.append(f)\n',
     '                         f"not {runtimes[f.artifact]}"\n', ("tests/test_promises_fallbacks.py",),
     "a trtexec/SNPE artifact's suspect is not re-measured and its first verdict stands"),
    ("promise-tune-noisy-control-ignored", "dmsbuild/pipeline/tune/choice.py",
     "    return refused, ([] if refused else faster_and_passing([r for r in rows if not disturbed(r)]))",
     "    return refused, faster_and_passing(rows)", ("tests/test_promises_fallbacks.py",),
     "a candidate whose A/A control excluded 1.00 is never chosen, and without another the default stays"),
    ("promise-tune-disturbed-one-sided", "dmsbuild/pipeline/tune/choice.py",
     '    if c and not c["ci_low"] <= 1.0 <= c["ci_high"]:\n', '    if c and c["ci_low"] > 1.0:\n',
     ("tests/test_promises_fallbacks.py",),
     "a candidate's control excluding 1.00 from either side (its default ran faster or slower than itself) drops it"),
    ("promise-tune-confirmation-control-ignored", "dmsbuild/pipeline/tune/choice.py",
     "    return _control(c).refusal(\"choose\") if c and c.get(\"problem\") else None\n",
     "    return None\n", ("tests/test_promises_fallbacks.py",),
     "the confirmation's failed A/A control refuses the choice: nothing chosen, the default stays"),
    # ---------------------------------------------------------------- (c) measurement order on the runner's output
    ("promise-interleave-old-always-first", "dmsbuild/board/runner/dms_bench.py",
     "            for side in orders[i % len(orders)]:\n", "            for side in orders[0]:\n",
     ("tests/test_promises_order.py",), "the interleaved re-measure rotates the sides: old is not always timed first"),
    ("promise-interleave-rotation-stalls", "dmsbuild/board/runner/dms_bench.py",
     "            for side in orders[i % len(orders)]:\n", "            for side in orders[(i // 2) % len(orders)]:\n",
     ("tests/test_promises_order.py",), "every block changes the order (no side keeps its place two blocks running)"),

    # ---------------------------------------------------------------- (d) every config field that affects an artifact
    ("promise-build-key-without-accuracy", "dmsbuild/tasks/build.py",
     '    settings["accuracy"] = as_dict(proj.accuracy)', "    pass", ("tests/test_promises_config.py",),
     "a project accuracy floor rebuilds (re-gates) every target's build"),
    ("promise-export-key-without-export", "dmsbuild/tasks/build.py",
     'settings = {"model": as_dict(m), "input": as_dict(proj.input), "outputs": as_dict(proj.outputs),\n                "export": as_dict(proj.export)}',
     'settings = {"model": as_dict(m), "input": as_dict(proj.input), "outputs": as_dict(proj.outputs)}',
     ("tests/test_promises_config.py",), "the exporter, opset and dynamic batch re-export the model"),
    ("promise-deploy-settings-rebuild", "dmsbuild/tasks/build.py",
     'if k not in ("deploy", "bench", "description", "transport", "tune")',
     'if k not in ("bench", "description", "transport", "tune")', ("tests/test_promises_config.py",),
     "a deploy setting (board root, waves, ...) rebuilds no artifact"),
    ("promise-dynamic-key-off", "dmsbuild/tasks/build.py",
     '"uptodate": [config_changed(json.dumps(as_dict(proj.quantization.dynamic), sort_keys=True))]}',
     '"uptodate": []}', ("tests/test_promises_config.py",),
     "a dynamic-quantization setting re-quantizes the dynamic INT8 artifact"),

    # ---------------------------------------------------------------- (e) every deploy pre-flight check of every runtime
    ("promise-preflight-trtexec-dropped", "dmsbuild/ship/doctor.py",
     'PREFLIGHT = ("python3", "numpy", "onnxruntime", "trtexec")', 'PREFLIGHT = ("python3", "numpy", "onnxruntime")',
     ("tests/test_promises_preflight.py",), "a TensorRT board without trtexec is refused before anything is sent"),
    ("promise-preflight-qnn-without-ort", "dmsbuild/backends/qnn.py",
     '        checks = [board_onnxruntime(board, facts, need),\n', '        checks = [\n', ("tests/test_promises_preflight.py",),
     "a QNN board without onnxruntime is refused before anything is sent"),
    ("promise-preflight-not-raised", "dmsbuild/ship/release.py", "    if blocking:\n", "    if False:\n",
     ("tests/test_promises_preflight.py",), "a board missing a pre-flight tool gets a one-line refusal, nothing sent"),

    # ---------------------------------------------------------------- (f) SSH precedence, with and without OpenSSH
    ("promise-fallback-config-overrides-cli", "dmsbuild/transport/ssh.py",
     "            elif key not in opts:\n                opts[key] = [value] if isinstance(value, str) else list(value)\n",
     "            else:\n                opts[key] = [value] if isinstance(value, str) else list(value)\n",
     ("tests/test_promises_ssh.py",),
     "without OpenSSH (paramiko's parser) the inventory's options still win over the ssh config"),
    ("promise-fallback-config-keys-first", "dmsbuild/transport/ssh.py",
     "                opts.setdefault(key, []).extend(value)\n", "                opts[key] = [*value, *opts.get(key, [])]\n",
     ("tests/test_promises_ssh.py",), "the inventory's identity file is offered before the config's (as ssh -i does)"),
    ("promise-inventory-port-dropped", "dmsbuild/transport/ssh.py",
     '    if board.port:\n        own += ["-p", str(board.port)]\n', "", ("tests/test_promises_ssh.py",),
     "the inventory's port wins over the ssh config's (given to ssh -G as -p)"),
    ("promise-config-timeout-wins", "dmsbuild/transport/sshconfig.py",
     'timeout=timeout if timeout is not None else (float(ct) if ct and ct != "none" else DEFAULT_TIMEOUT),',
     'timeout=float(ct) if ct and ct != "none" else (timeout if timeout is not None else DEFAULT_TIMEOUT),',
     ("tests/test_promises_ssh.py",), "connect_timeout: the inventory's, else the config's ConnectTimeout, else 10 s"),

    # ---------------------------------------------------------------- (g) "incomparable conditions" of the board state
    ("promise-throttled-after-ignored", BS, '    for when in ("before", "after"):\n        t = ', '    for when in ("before",):\n        t = ',
     (BST,), "a run throttled by its end is not compared"),
    ("promise-baseline-throttle-ignored", BS, "    why = throttled(previous)\n", "    why = None\n", (BST,),
     "a baseline taken under throttling is not compared"),
    ("promise-undervoltage-ignored", BS,
     'flags = [k for k in ("throttled", "freq_capped", "under_voltage", "soft_temp_limit") if t.get(k)]',
     'flags = [k for k in ("throttled", "freq_capped") if t.get(k)]', (BST,),
     "every get_throttled flag now (under-voltage, soft temperature limit too) makes a run incomparable"),
    ("promise-clocks-change-compared", BS, "    if lo is not None and ln is not None and lo != ln:\n",
     "    if False:\n", (BST,), "jetson_clocks on for one run and off for the other: not compared"),
    ("promise-gate-compares-incomparable", "dmsbuild/measure/gates.py", "        if why_not:\n", "        if False:\n",
     (BST,), "the latency gate skips (with a note) what the board state says is incomparable"),

    ("promise-ansible-plain-spelling-wins", "dmsbuild/ship/ansible.py",
     "                continue  # the ansible_ssh_* spelling of this variable is set: it wins\n",
     "                pass  # the ansible_ssh_* spelling of this variable is set: it wins\n",
     ("tests/test_promises_ssh.py::test_ansible_variables_follow_ansibles_precedence_and_the_ssh_spelling_wins",),
     "where both spellings are set, ansible_ssh_* wins, wherever it is set"),
    ("promise-ansible-host-vars-lose", "dmsbuild/ship/ansible.py",
     "            merged.update(self.host_vars[h])\n",
     "            merged = {**self.host_vars[h], **merged}\n",
     ("tests/test_promises_ssh.py::test_ansible_variables_follow_ansibles_precedence_and_the_ssh_spelling_wins",),
     "a host's own variables win over its groups'"),
    ("promise-ansible-parent-wins", "dmsbuild/ship/ansible.py",
     "key=lambda g: (depths[g], self._priority(g), g)):", "key=lambda g: (-depths[g], self._priority(g), g)):",
     ("tests/test_promises_ssh.py::test_ansible_variables_follow_ansibles_precedence_and_the_ssh_spelling_wins",),
     "a child group's variables win over its parent's, and both over [all:vars]"),

    # ---------------------------------------------------------------- (h) durability under a power cut (tests/powercut.py)
    ("durability-object-not-fsynced", AGENT, "            os.chmod(part, 0o444)\n            fsync_path(part)\n",
     "            os.chmod(part, 0o444)\n", (PC,),
     "an uploaded object's content is fsync'ed before it becomes an object: a cut after the switch never shows a torn file"),
    ("durability-current-dir-not-fsynced", AGENT, "    os.replace(tmp, link)\n    fsync_path(root)\n",
     "    os.replace(tmp, link)\n", (PC,),
     "the root is fsync'ed after the `current` rename: a cut right after the agent answered success keeps the new release"),
    ("durability-release-not-synced", AGENT, '    sync(root, rid)\n    fault_point("commit.synced")\n',
     '    fault_point("commit.synced")\n', (PC,),
     "the release's folders are fsync'ed before the switch: `current` never points to a missing or half release"),
    ("durability-state-file-not-fsynced", AGENT, "        fh.flush()\n        os.fsync(fh.fileno())\n",
     "        fh.flush()\n", (PC,),
     "history.json (and every state file) is fsync'ed before its rename: a cut never leaves it torn"),
    ("durability-new-root-not-fsynced", AGENT, "    for p in reversed(made):\n        fsync_path(os.path.dirname(p))\n",
     "    pass\n", (PC,),
     "a first deploy's new root (and objects/, releases/) is fsync'ed into its parent: success survives a cut"),
    ("durability-marker-leftover-refused", AGENT, 'set(e for e in entries if not e.startswith(MARKER + ".tmp.")) <= {".lock", "tune"}',
     'set(entries) <= {".lock", "tune"}', (PC,),
     "a first deploy cut while writing the marker leaves a root the next deploy still takes"),
]


def promise_mutations(mutation_cls) -> list:
    return [mutation_cls(*p) for p in PROMISES]
