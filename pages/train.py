"""Train: start a job (one layer set or a sweep over all layers), follow it live, cancel or resume."""
from __future__ import annotations

import copy
from typing import Optional

import streamlit as st

from encoding_core.studio import (
    EncodingCoreError,
    format_seconds,
    parse_scheduler,
    scheduler_label,
    trimming_preview,
    worker_rows,
)
from pages import _common as common

ACTIVE_STATES = ("queued", "running")

st.title("Train")
st.caption("Training runs in a separate background process; you can switch pages or reload the browser.")
cfg = common.config()
manager = common.jobs()


def _problems() -> list[str]:
    """Why the current experiment cannot start yet (empty when it can)."""
    current = common.assembly()
    if current is None:
        return ["no assembly is loaded (Assembly page)"]
    problems = []
    missing = [n for n, p in zip(current.stories, current.get_audio_path()) if not p]
    if missing:
        problems.append(f"no audio for {missing} (Audio page)")
    rows = trimming_preview(current, cfg.alignment.trimming, cfg.assembly.test_story or None, cfg.ridge.mode)
    bad = [f"{r['story']} ({r['features']} vs {r['targets']} TRs)" for r in rows if not r["match"]]
    if bad:
        problems.append(f"trimmed lengths differ for {bad} (Setup page)")
    try:
        cfg.validate()
    except EncodingCoreError as exc:
        problems.append(str(exc))
    return problems


def _scheduler_input() -> tuple[Optional[str], Optional[str]]:
    """The typed Dask scheduler (None = this machine) and the reason it is invalid (None when valid)."""
    text = st.text_input(
        "Dask scheduler address", value=st.session_state.get(common.SCHEDULER_KEY, ""), key="scheduler_address",
        placeholder="empty = this machine; local:2 or tcp://HOST:8786",
        help="Empty: train in one background process on this machine. `local:N`: a Dask cluster of N worker "
             "processes on this machine. `tcp://HOST:8786`: a running `dask scheduler` (stories are extracted "
             "and layers fitted on its workers; the cache and results folders must be shared with them).")
    st.session_state[common.SCHEDULER_KEY] = text
    if not text.strip():
        return None, None
    try:
        parse_scheduler(text)
    except EncodingCoreError as exc:
        st.error(f"Dask scheduler address: {exc}")
        return None, "the Dask scheduler address is not valid (see above)"
    st.caption(f"The job will run on the {scheduler_label(text.strip())}.")
    return text.strip(), None


def _start(sweep: bool, scheduler: Optional[str]) -> None:
    job_config = copy.deepcopy(cfg)
    if sweep:
        job_config.layers = "all"
    with common.user_errors("Starting the job"):
        st.session_state[common.JOB_KEY] = manager.start(job_config, scheduler=scheduler)
        st.toast("Job started.")


current = common.assembly()
if current is not None and current.simulated:
    common.simulated_banner("assembly")

scheduler, scheduler_problem = _scheduler_input()
problems = _problems() + ([scheduler_problem] if scheduler_problem else [])
c1, c2 = st.columns(2)
layers_text = "all layers" if cfg.layers == "all" else f"layers {cfg.layers}"
if c1.button(f"Train ({layers_text})", type="primary", disabled=bool(problems), key="start_train"):
    _start(sweep=False, scheduler=scheduler)
if c2.button("Sweep all layers", disabled=bool(problems), key="start_sweep"):
    _start(sweep=True, scheduler=scheduler)
for problem in problems:
    st.warning(f"Cannot start yet: {problem}.")

job_list = []
with common.user_errors("Listing jobs"):
    job_list = manager.list()
if not job_list:
    st.info("No jobs yet.")
    st.stop()

ids = [j.job_id for j in job_list]
selected = st.session_state.get(common.JOB_KEY)
if selected not in ids:
    selected = ids[0]
if st.session_state.get("job_pick") != selected:  # a job was started or resumed: show it
    st.session_state["job_pick"] = selected


def _job_picked() -> None:
    st.session_state[common.JOB_KEY] = st.session_state["job_pick"]


job_id = st.selectbox("Job", ids, index=ids.index(selected), key="job_pick", on_change=_job_picked,
                      format_func=lambda i: f"{i} · {next(j.state for j in job_list if j.job_id == i)}")
st.session_state[common.JOB_KEY] = job_id


@st.fragment(run_every=1.5)
def job_panel(job_id: str) -> None:
    """Live status of one job, refreshed every 1.5 s while the page is open."""
    try:
        status = manager.status(job_id)
    except EncodingCoreError as exc:
        st.error(f"Cannot read job {job_id}: {exc}")
        return
    st.markdown(f"**State:** {status.state} · **stage:** {status.stage or '-'} · "
                f"**ETA:** {format_seconds(status.eta_s)}")
    if status.scheduler:
        st.markdown(f"**Runs on:** {scheduler_label(status.scheduler)} (`{status.scheduler}`)")
    fraction = (status.done / status.total) if status.total else 0.0
    st.progress(min(max(fraction, 0.0), 1.0), text=f"{status.stage or 'waiting'}: {status.done}/{status.total} "
                                                      f"{status.message or ''}")
    stages = getattr(status, "stages", None) or {}
    if stages:
        st.dataframe([{"stage": name, **(info if isinstance(info, dict) else {"state": info})}
                      for name, info in stages.items()], hide_index=True)
    if status.scheduler:
        if status.workers:
            st.caption("Per worker: stories extracted, layers fitted, busy seconds, tasks it holds now.")
            st.dataframe(worker_rows(status.workers), hide_index=True, key=f"workers_{job_id}")
        else:
            st.caption("No worker has reported yet.")
    if status.state in ACTIVE_STATES:
        if st.button("Cancel", key=f"cancel_{job_id}"):
            with common.user_errors("Cancelling"):
                manager.cancel(job_id)
    elif status.state == "done" and status.run_id:
        st.success(f"Finished: run {status.run_id}.")
        if st.button("Show the results", type="primary", key=f"results_{job_id}"):
            st.session_state[common.RUN_KEY] = status.run_id
            st.switch_page(common.PAGES["Results"])
    elif status.state in ("failed", "interrupted", "cancelled"):
        if status.error:
            st.error(f"The job {status.state}: {status.error}")
        else:
            st.warning(f"The job was {status.state}.")
        if status.state in ("failed", "interrupted") and st.button("Resume", key=f"resume_{job_id}"):
            with common.user_errors("Resuming"):
                st.session_state[common.JOB_KEY] = manager.resume(job_id)
                st.rerun()
    with st.expander("Log (last lines)"):
        with common.user_errors("Reading the log"):
            st.code(manager.log_tail(job_id) or "(empty)", language="text")


job_panel(job_id)

st.subheader("All jobs")
st.dataframe([{"job": j.job_id, "state": j.state, "stage": j.stage, "progress": f"{j.done}/{j.total}",
               "runs on": j.scheduler or "this machine", "run": j.run_id or ""} for j in job_list], hide_index=True)
