"""Streamlit glue shared by the pages: session state, cached loads, error display, badges.

No science here: pages call ``encoding_core`` and draw. State that must survive page
switches lives under non-widget keys; jobs and runs live on disk (JobManager, RunStore).
"""
from __future__ import annotations

import contextlib
import contextvars
import gc
import logging
import runpy
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import streamlit as st

from encoding_core import viz
from encoding_core.studio import (
    EncodingCoreError,
    ExperimentConfig,
    JobManager,
    RunStore,
    StudioDirs,
    apply_audio_map,
    copy_assembly,
    how_it_works,
    load_assembly,
    resolve_user_path,
    studio_dirs,
)

logger = logging.getLogger("encoding_studio")

# Pages also run without app.py (a page's URL opened in a new session runs the page file alone):
# the plotting libraries are imported here too, one thread at a time (see app.py).
viz.import_plotting_libraries()

APP_SCRIPT = Path(__file__).resolve().parents[1] / "app.py"
_routed = contextvars.ContextVar("encoding_studio_routed", default=False)


@contextlib.contextmanager
def routed_page() -> Iterator[None]:
    """app.py runs the chosen page inside this, so :func:`enter_through_app` knows the router ran."""
    token = _routed.set(True)
    try:
        yield
    finally:
        _routed.reset(token)


@st.cache_resource(show_spinner=False)
def start_figure_warm_up() -> threading.Thread:
    """Once per server process: load the brain meshes in the background while the user reads Home.

    Defined here, not in app.py: app.py also runs as a second module when a page URL is the first
    request (:func:`enter_through_app`), and a cached function defined there would be a second
    cache entry, so a second warm-up thread."""
    thread = threading.Thread(target=viz.warm_up, name="fsaverage-warm-up", daemon=True)
    thread.start()
    return thread


_freeze_lock = threading.Lock()
_modules_when_frozen = 0


def freeze_long_lived_objects() -> bool:
    """Move every object alive now out of the garbage collector's sight (``gc.freeze``) when modules
    were imported since the last call; True if it froze. app.py calls this at the start of each run.

    Why: Streamlit runs a full ``gc.collect(2)`` after every script run (``runner.postScriptGC``).
    It walks every container object in the process: about 260,000 once the plotting libraries
    are loaded, 580,000 with torch and transformers. On this project's 2-core machine that took
    0.19-0.40 s per rerun, holding the GIL, so the rerun's last messages waited to be sent and
    every control change paid it. Nearly all of those objects come with imported modules and live
    as long as the server, so they are collected once here (garbage is not frozen) and frozen;
    later collections walk only what the sessions create. Cyclic garbage made later from objects
    frozen here is not reclaimed: the price, bounded by what is alive at the few freezes."""
    global _modules_when_frozen
    if len(sys.modules) == _modules_when_frozen:
        return False
    with _freeze_lock:
        if len(sys.modules) == _modules_when_frozen:
            return False
        _modules_when_frozen = len(sys.modules)
        gc.collect()
        gc.freeze()
        return True


def enter_through_app() -> None:
    """Every page calls this first. Streamlit also runs a page file on its own: a ``pages/``
    folder beside app.py switches on its older multipage mode until some run of the server
    process calls ``st.navigation``. So when a freshly started server's first request is a page
    URL (a shared link such as ``/results?run=...``), that file ran without app.py: the sidebar
    listed the folder's raw files and the app's navigation was missing. Then this runs app.py,
    which draws the same page (same URL and query parameters) through ``st.navigation``, and
    stops the stray run."""
    if _routed.get():
        return
    runpy.run_path(str(APP_SCRIPT), run_name="__encoding_studio_app__")
    st.stop()


CONFIG_KEY = "experiment_config"
ASSEMBLY_KEY = "assembly_source"  # (path, subject, stories) of the loaded assembly
AUDIO_MATCHES_KEY = "audio_matches"
JOB_KEY = "selected_job"
RUN_KEY = "selected_run"
SCHEDULER_KEY = "dask_scheduler"  # the Train page's scheduler text (survives page switches)
PROJECTOR_KEY = "projector"  # the sidebar's Projector toggle (drawn on every page, so it persists)

PAGES = {
    "Home": "pages/home.py",
    "Assembly": "pages/assembly.py",
    "Audio": "pages/audio.py",
    "Model & layer": "pages/model.py",
    "Setup": "pages/setup.py",
    "Train": "pages/train.py",
    "Results": "pages/results.py",
}


# --------------------------------------------------------------------------- folders and state
def dirs() -> StudioDirs:
    """The app's folders (results, cache, jobs, uploads) from ENCODING_STUDIO_* variables."""
    return studio_dirs()


def default_config() -> ExperimentConfig:
    d = dirs()
    return ExperimentConfig(results_dir=str(d.results), cache_dir=str(d.cache))


def config() -> ExperimentConfig:
    """The session's one ExperimentConfig (created on first use)."""
    if CONFIG_KEY not in st.session_state:
        st.session_state[CONFIG_KEY] = default_config()
    return st.session_state[CONFIG_KEY]


def set_config(new_config: ExperimentConfig) -> None:
    st.session_state[CONFIG_KEY] = new_config


@contextlib.contextmanager
def user_errors(action: str) -> Iterator[None]:
    """Show core errors as a short ``st.error``; log anything unexpected (never a traceback)."""
    try:
        yield
    except EncodingCoreError as exc:
        logger.info("%s failed: %s", action, exc)
        st.error(f"{action} failed: {exc}")
    except Exception as exc:  # noqa: BLE001 - last line of defence for the UI
        logger.exception("%s failed unexpectedly", action)
        st.error(f"{action} failed unexpectedly ({exc.__class__.__name__}: {exc}). "
                 f"The details are in the app's log.")


def user_path(text: str, what: str, must_exist: bool = True) -> Optional[Path]:
    """Resolve a typed path through the allowed data roots; show the error and return None."""
    try:
        return resolve_user_path(text, must_exist=must_exist)
    except EncodingCoreError as exc:
        st.error(f"{what}: {exc}")
        return None


def looks_like_local_path(text: str) -> bool:
    """True when ``text`` names something on disk (so it must pass the data-root check)."""
    try:
        return bool(text.strip()) and Path(text.strip()).expanduser().exists()
    except (OSError, ValueError):
        return True  # unreadable names are treated as paths, so the root check reports them


# --------------------------------------------------------------------------- core services
@st.cache_resource(show_spinner=False)
def job_manager(jobs_dir: str):
    """One JobManager per jobs folder (shared by sessions; jobs themselves live on disk)."""

    return JobManager(jobs_dir)


def jobs():
    return job_manager(str(dirs().jobs))


def run_store():
    return RunStore(config().results_dir or dirs().results)


def _mtime(path: str) -> float:
    try:
        return Path(path).stat().st_mtime
    except OSError:
        return 0.0


@st.cache_resource(show_spinner=False, max_entries=4)
def _load_assembly_cached(path: str, mtime: float, subject: str, stories: tuple[str, ...], cache_dir: str,
                          lebel_options: tuple[tuple[str, Any], ...] = ()):
    """Load an assembly once per (path, mtime, subject, stories, options); LeBel reads only the chosen
    stories. lebel_options: (name, value) pairs for LeBel folders (tr_time_convention, skip_missing)."""

    options: dict[str, Any] = {}
    if subject:
        options["subject"] = subject
    if path == "demo":
        options["cache_dir"] = cache_dir
    elif Path(path).is_dir():
        if stories:
            options["stories"] = list(stories)
        options.update(dict(lebel_options))
    loaded = load_assembly(path, **options)
    if stories and list(stories) != loaded.stories and not Path(path).is_dir():  # folders: the loader chose
        loaded = loaded.subset(list(stories))
    return loaded


def _lebel_options() -> tuple[tuple[str, Any], ...]:
    """The config's LeBel-folder options, as a hashable cache key."""
    source = config().assembly
    return (("tr_time_convention", source.tr_time_convention), ("skip_missing", bool(source.skip_missing)))


def load_assembly_into_session(path: str, subject: str = "", stories: tuple[str, ...] = (),
                               skip_missing: Optional[bool] = None) -> Any:
    """Load (or reuse) an assembly and make it the session's; updates the config's source.

    skip_missing (LeBel folders): load the other stories when some lack files (None: keep
    the config's setting). Raises EncodingCoreError on bad input (callers wrap with
    :func:`user_errors`), MissingStoryFilesError when stories lack files and not skipping.
    """
    if skip_missing is not None:
        config().assembly.skip_missing = bool(skip_missing)
    assembly = _load_assembly_cached(path, _mtime(path), subject, tuple(stories), str(dirs().cache),
                                     _lebel_options())
    st.session_state[ASSEMBLY_KEY] = (path, subject, tuple(stories))
    st.session_state.pop(AUDIO_MATCHES_KEY, None)
    for widget_key in ("test_story_pick", "setup_test_story", "story_subset"):  # options changed
        st.session_state.pop(widget_key, None)
    cfg = config()
    if cfg.assembly.path != path or cfg.assembly.subject != subject:
        cfg.assembly.audio_overrides = {}
    cfg.assembly.path, cfg.assembly.subject, cfg.assembly.stories = path, subject, list(stories)
    if cfg.assembly.test_story not in assembly.stories:
        cfg.assembly.test_story = assembly.effective_test_story()
    return assembly


def base_assembly():
    """The loaded assembly as stored in the cache (do not modify), or None."""
    source = st.session_state.get(ASSEMBLY_KEY)
    if source is None:
        return None
    path, subject, stories = source
    try:
        return _load_assembly_cached(path, _mtime(path), subject, stories, str(dirs().cache), _lebel_options())
    except EncodingCoreError as exc:
        st.error(f"The assembly {path} can no longer be loaded: {exc}")
        st.session_state.pop(ASSEMBLY_KEY, None)
        return None


def all_story_names() -> list[str]:
    """Every story of the loaded source (before any subset), or [] when nothing is loaded."""
    source = st.session_state.get(ASSEMBLY_KEY)
    if source is None:
        return []
    path, subject, _ = source
    return _load_assembly_cached(path, _mtime(path), subject, (), str(dirs().cache), _lebel_options()).stories


def assembly():
    """The session's assembly with its audio mapping and test story applied, or None."""
    base = base_assembly()
    if base is None:
        return None
    current = copy_assembly(base)
    matches = st.session_state.get(AUDIO_MATCHES_KEY)
    if matches:
        apply_audio_map(current, matches)
    test = config().assembly.test_story
    if test in current.stories:
        current.test_story = test
    return current


def audio_matches():
    return st.session_state.get(AUDIO_MATCHES_KEY)


def set_audio_matches(matches) -> None:
    st.session_state[AUDIO_MATCHES_KEY] = list(matches)


def stories_with_audio(current) -> int:
    """Stories whose audio path is set and exists on disk."""
    return sum(1 for p in current.get_audio_path() if p and Path(p).is_file())


# --------------------------------------------------------------------------- badges
SIMULATED_HEADLINE = "SIMULATED DATA"


def simulated_banner(what: str = "data", headline: str = SIMULATED_HEADLINE, note: str = "") -> None:
    """The visible SIMULATED badge (the same on every page) for any page that shows simulated data."""
    st.warning(f"**{headline}** – this {what} was generated by the demo simulator, not recorded "
               f"from a brain. {note + ' ' if note else ''}Use it to learn the app; do not interpret it as a "
               f"scientific finding.", icon=":material/science:")


def require_assembly() -> Any:
    """The assembly, or draw an empty-state hint with a link to the Assembly page and return None."""
    current = assembly()
    if current is None:
        st.info("No assembly is loaded yet. Load one (or the demo) first.")
        st.page_link(PAGES["Assembly"], label="Go to Assembly", icon=":material/folder_open:")
        return None
    if current.simulated:
        simulated_banner("assembly")
    return current


def projector_on() -> bool:
    """Whether the sidebar's Projector toggle is on."""
    return bool(st.session_state.get(PROJECTOR_KEY, False))


def figure_style() -> viz.FigureStyle:
    """Screen or projector sizes for every figure, from the sidebar toggle."""
    return viz.figure_style(projector_on())


def chart(figure, key: str, where=None) -> None:
    """Draw a plotly figure in the current style (projector: larger fonts, thicker lines)."""
    (where or st).plotly_chart(viz.apply_style(figure, figure_style()), key=key)


def sidebar_state() -> None:
    """Sidebar: the current experiment (assembly, audio, model, job), the SIMULATED badge and the
    Projector toggle."""
    cfg = config()
    current = assembly()
    with st.sidebar:
        if st.toggle("Projector", key=PROJECTOR_KEY,
                     help="Larger text in the app and the figures, thicker lines and outlines: for a classroom."):
            st.html("<style>html { font-size: 20px; }</style>")
        st.markdown("### Current experiment")
        if current is None:
            st.caption("No assembly loaded.")
        else:
            if current.simulated:
                st.error("SIMULATED DATA", icon=":material/science:")
            st.caption(f"**{current.subject}** · {len(current.stories)} stories · {current.n_voxels} voxels · "
                       f"TR {current.tr:g} s · {current.space.describe()}")
            st.caption(f"Audio: {stories_with_audio(current)}/{len(current.stories)} stories")
        st.caption(f"Model: `{cfg.features.model_name}` · layers: {cfg.layers}")
        job_id = st.session_state.get(JOB_KEY)
        if job_id:  # its state from disk at this rerun (the Train page reruns the app when it changes)
            try:
                st.caption(f"Job: `{job_id}` · {jobs().status(job_id).state}")
            except EncodingCoreError:
                st.caption(f"Job: `{job_id}` (no longer on disk)")


def how_this_works(page: str) -> None:
    """The page's "How this works" expander: the method, its assumptions and a reference."""
    with st.expander("How this works", icon=":material/school:"):
        st.markdown(how_it_works(page))


# --------------------------------------------------------------------------- view state in the URL
KEPT_PREFIX = "kept:"  # non-widget keys: a page's last choices, which survive leaving the page


def restore_widget(key: str, param: str, parse: Callable[[str], Any], valid: Callable[[Any], bool],
                   default: Any = None) -> None:
    """Before a widget is drawn, give it a value when it has none of its own yet (a new visit:
    Streamlit drops a widget's state when its page is left) or when its value is no longer valid
    (e.g. a layer the newly chosen run does not have). In order: the URL's query parameter
    ``param`` (a shared link or a reload), the value this session chose on its last visit,
    ``default``. ``parse`` turns the URL text into a value (ValueError/TypeError when bad);
    ``valid`` says whether a value can be shown."""
    if key in st.session_state:
        if valid(st.session_state[key]):
            return
        del st.session_state[key]
    candidates = []
    raw = st.query_params.get(param)
    if raw is not None:
        try:
            candidates.append(parse(raw))
        except (TypeError, ValueError):
            logger.info("Ignoring the URL's %s=%r: not a valid value", param, raw)
    if KEPT_PREFIX + key in st.session_state:
        candidates.append(st.session_state[KEPT_PREFIX + key])
    candidates.append(default)
    for value in candidates:
        if value is not None and valid(value):
            st.session_state[key] = value
            return


def url_text(value: Any) -> str:
    """A widget value as URL text: ``1``/``0`` for booleans, ``0.15`` for floats, else ``str``."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def url_bool(text: str) -> bool:
    """The inverse of :func:`url_text` for booleans (ValueError for anything else)."""
    if text in ("1", "true", "True"):
        return True
    if text in ("0", "false", "False"):
        return False
    raise ValueError(text)


def keep_widgets(params: dict[str, str], text: Callable[[Any], str] = url_text) -> None:
    """After the widgets are drawn: remember each widget's value for the next visit and write it into
    the URL as its query parameter (``params``: query parameter -> widget key), so the address bar
    is a link to this view."""
    for param, key in params.items():
        if key not in st.session_state:
            continue
        value = st.session_state[key]
        st.session_state[KEPT_PREFIX + key] = value
        shown = text(value)
        if st.query_params.get(param) != shown:
            st.query_params[param] = shown
