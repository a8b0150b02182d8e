"""Clean synthetic pages for training: printed text, tables, rules and handwriting-like strokes.

Real ground truth is scarce, so most training pairs start from a page drawn here. The page is an ink
*coverage* map (float32, 1 = ink, anti-aliased edges), not yet binary: :mod:`ocrobin.degrade` transforms
it geometrically first and thresholds it afterwards, which keeps the degraded image and its ground truth
aligned to the pixel.

Fonts come from the usual font folders (``/usr/share/fonts`` and friends, or ``OCROBIN_FONT_DIRS``); with
none installed Pillow's built-in font is used, so the module works on a bare system too. Text comes from
a small built-in model (letter frequencies, a hand-written word list, several scripts) rather than a
corpus: a binarizer needs the shapes of letters, not their meaning.

The module also holds two small image helpers (:func:`gaussian_blur`, :func:`smooth_noise`) that
:mod:`ocrobin.degrade` shares.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, features

#: Folders searched for TrueType / OpenType fonts (``OCROBIN_FONT_DIRS``, ``os.pathsep``-separated,
#: replaces them).
FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.local/share/fonts", "~/.fonts")

#: x-height range of rendered text in pixels.
XHEIGHT_RANGE = (6.0, 40.0)

#: Page layouts :func:`render_page` draws, with their default probabilities.
LAYOUTS = {"print": 0.38, "hand": 0.34, "mixed": 0.18, "table": 0.10}

# Font names that are not text faces (symbols, initials, keyboard glyphs, maths).
_SKIP_FONT_WORDS = (
    "symbol",
    "dingbat",
    "d050000l",
    "math",
    "initials",
    "emoji",
    "icons",
    "linbiolinum_k",
    "linlibertine_i.",
)
# Handwriting / script faces, used more often on handwritten pages.
_HAND_FONT_WORDS = ("dancingscript", "kristi", "breip", "dkg", "script", "hand", "humor", "kaush", "klee")
# Blackletter and incunabula faces.
_OLD_FONT_WORDS = (
    "blankenburg",
    "fraktur",
    "gotico",
    "hamlet",
    "jessen",
    "zainer",
    "rusch",
    "fust",
    "textur",
    "parix",
    "ptolemy",
    "spira",
    "sweynheim",
    "soufflet",
    "proto",
)

# Characters that show whether a font covers a script (compared against the font's missing-glyph box).
_SCRIPT_PROBES = {
    "latin": "aegMQ",
    "latin_ext": "éüßçñ",
    "greek": "αλωΣ",
    "cyrillic": "жяб",
    "hebrew": "אשל",
    "arabic": "سلم",
}
_RTL = ("hebrew", "arabic")

# --- text model -------------------------------------------------------------------------------------------

# Relative letter frequencies of English text (well-known published figures, rounded).
_LATIN_FREQ = {
    "e": 12.7,
    "t": 9.1,
    "a": 8.2,
    "o": 7.5,
    "i": 7.0,
    "n": 6.7,
    "s": 6.3,
    "h": 6.1,
    "r": 6.0,
    "d": 4.3,
    "l": 4.0,
    "c": 2.8,
    "u": 2.8,
    "m": 2.4,
    "w": 2.4,
    "f": 2.2,
    "g": 2.0,
    "y": 2.0,
    "p": 1.9,
    "b": 1.5,
    "v": 1.0,
    "k": 0.8,
    "j": 0.15,
    "x": 0.15,
    "q": 0.1,
    "z": 0.07,
}
_LATIN_VOWELS = "aeiouy"
_LATIN_EXTRA = "éèêàâçëïôûüöäßñåøæœ"
_GREEK_VOWELS = "αεηιουω"
_GREEK_CONS = "βγδζθκλμνξπρστφχψ"
_CYR_VOWELS = "аеиоуыэюяё"
_CYR_CONS = "бвгджзйклмнпрстфхцчшщ"
_HEBREW = "אבגדהוזחטיכלמנסעפצקרשתםןךףץ"
_ARABIC = "ابتثجحخدذرزسشصضطظعغفقكلمنهوي"

# A small hand-made list of frequent short words of several European languages, so that lines contain
# the familiar shapes of function words as well as random letter strings.
_WORDS = (
    "the of and to in that was his with for which had not but from have they this were been their said "
    "all upon would there them when what more such some other into only your great time than these made "
    "after before every under between against during without through should could about those where "
    "der die und das ist nicht mit sich des auf für den von dem ein eine als auch noch nach wird bei "
    "aus wie oder wenn aber hat vor zur zum sind über unter durch gegen ohne wieder schon sehr "
    "le la les des est une dans que qui pour pas sur avec son par plus ses mais comme tout leur nous "
    "vous elle était été fait sans sous entre aussi bien même encore avant après "
    "et in est non cum ad per ex sed quod qui quae ut enim autem esse sunt etiam vel atque ipse anno "
    "domini ecclesiae regis gratia die mense "
    "il di che della per con una sono come anche questo quella el los las por con para una como pero "
    "sobre desde hasta entre cuando donde"
).split()
_PUNCT_AFTER = ((",", 0.075), (";", 0.01), (":", 0.008), (".", 0.05), ("?", 0.004), ("!", 0.003))


def _latin_tables() -> tuple[str, np.ndarray, str, np.ndarray]:
    vowels = "".join(c for c in _LATIN_FREQ if c in _LATIN_VOWELS)
    cons = "".join(c for c in _LATIN_FREQ if c not in _LATIN_VOWELS)
    pv = np.array([_LATIN_FREQ[c] for c in vowels])
    pc = np.array([_LATIN_FREQ[c] for c in cons])
    return vowels, pv / pv.sum(), cons, pc / pc.sum()


_LAT_V, _LAT_PV, _LAT_C, _LAT_PC = _latin_tables()


def _pick(rng: np.random.Generator, chars: str, p: np.ndarray | None = None) -> str:
    return chars[int(rng.choice(len(chars), p=p))]


def random_word(rng: np.random.Generator, script: str = "latin") -> str:
    """A pronounceable-looking random word of ``script`` (a vowel/consonant Markov chain).

    Args:
        rng: the random generator.
        script: ``latin``, ``latin_ext`` (with accents), ``greek``, ``cyrillic``, ``hebrew`` or ``arabic``.

    Returns:
        The word in lower case (scripts without case: as is).
    """
    n = int(min(14, 1 + rng.geometric(0.2)))
    if script in _RTL:
        letters = _HEBREW if script == "hebrew" else _ARABIC
        return "".join(_pick(rng, letters) for _ in range(max(2, n - 1)))
    if script == "greek":
        tables = (_GREEK_VOWELS, None, _GREEK_CONS, None)
    elif script == "cyrillic":
        tables = (_CYR_VOWELS, None, _CYR_CONS, None)
    else:
        tables = (_LAT_V, _LAT_PV, _LAT_C, _LAT_PC)
    vowel = bool(rng.random() < 0.4)
    out = []
    for _ in range(n):
        if vowel:
            out.append(_pick(rng, tables[0], tables[1]))
        else:
            out.append(_pick(rng, tables[2], tables[3]))
        vowel = bool(rng.random() < (0.65 if not vowel else 0.2))
    word = "".join(out)
    if script == "greek" and word.endswith("σ"):
        word = word[:-1] + "ς"
    if script == "latin_ext" and rng.random() < 0.5:
        i = int(rng.integers(len(word)))
        word = word[:i] + _pick(rng, _LATIN_EXTRA) + word[i + 1 :]
    return word


def _roman(n: int) -> str:
    vals = (
        (1000, "M"),
        (900, "CM"),
        (500, "D"),
        (400, "CD"),
        (100, "C"),
        (90, "XC"),
        (50, "L"),
        (40, "XL"),
        (10, "X"),
        (9, "IX"),
        (5, "V"),
        (4, "IV"),
        (1, "I"),
    )
    out = []
    for v, s in vals:
        while n >= v:
            out.append(s)
            n -= v
    return "".join(out)


def random_number(rng: np.random.Generator) -> str:
    """A number as it appears in old documents: year, count, price, date, ordinal or roman numeral."""
    kind = int(rng.integers(6))
    if kind == 0:
        return str(int(rng.integers(1450, 1960)))
    if kind == 1:
        return str(int(rng.geometric(0.05)))
    if kind == 2:
        return f"{int(rng.integers(0, 500))}.{int(rng.integers(0, 100)):02d}"
    if kind == 3:
        return f"{int(rng.integers(1, 32))}.{int(rng.integers(1, 13))}.{int(rng.integers(1700, 1960))}"
    if kind == 4:
        n = int(rng.integers(1, 40))
        return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"
    return _roman(int(rng.integers(1, 60)))


class TextSource:
    """An endless stream of words with sentence case, punctuation and numbers.

    Args:
        rng: the random generator.
        script: the script of generated words (the word list is used for Latin scripts only).
    """

    def __init__(self, rng: np.random.Generator, script: str = "latin") -> None:
        self.rng = rng
        self.script = script
        self.sentence_start = True
        self.upper = False
        self.p_list = 0.45 if script in ("latin", "latin_ext") else 0.0
        self.p_number = float(rng.uniform(0.0, 0.08))

    def word(self) -> str:
        """The next word, with any attached punctuation."""
        rng = self.rng
        if rng.random() < self.p_number:
            w = random_number(rng)
        elif rng.random() < self.p_list:
            w = _WORDS[int(rng.integers(len(_WORDS)))]
        else:
            w = random_word(rng, self.script)
        if self.upper:
            w = w.upper()
        elif self.sentence_start or rng.random() < 0.06:
            w = w[:1].upper() + w[1:]
        self.sentence_start = False
        r = rng.random()
        if r < 0.015:
            w = f"({w})"
        elif r < 0.03:
            w = f"\u201c{w}\u201d" if rng.random() < 0.5 else f'"{w}"'
        elif r < 0.04:
            w = w + "-" + random_word(rng, self.script)
        for p, prob in _PUNCT_AFTER:
            if rng.random() < prob:
                w += p
                if p in ".?!":
                    self.sentence_start = True
                break
        return w

    def words(self, n: int) -> list[str]:
        """The next ``n`` words."""
        return [self.word() for _ in range(n)]


# --- image helpers shared with ocrobin.degrade --------------------------------------------------------------


def gaussian_blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a float array in [0, 1] (H×W or C×H×W), with 8-bit precision.

    Pillow's blur is fast and constant-time in sigma but takes 8-bit images only; every blurred quantity
    here (coverage, shading, the final page) ends up 8-bit anyway.
    """
    if sigma <= 0.05:
        return a.astype(np.float32, copy=True)
    if a.ndim == 3:
        return np.stack([gaussian_blur(c, sigma) for c in a])
    img = Image.fromarray(np.round(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8))
    out = img.filter(ImageFilter.GaussianBlur(float(sigma)))
    return np.asarray(out, dtype=np.float32) * np.float32(1.0 / 255.0)


def smooth_noise(
    rng: np.random.Generator, shape: tuple[int, int], scale: float, octaves: int = 1, persistence: float = 0.5
) -> np.ndarray:
    """Zero-mean, unit-variance random field with features of about ``scale`` pixels (plus finer octaves).

    Built coarse to fine: a Gaussian grid at ``scale``, enlarged ×2 with bicubic interpolation and added to
    a finer grid, once per octave, and only the finest grid is enlarged to full size. Cheap, smooth and
    deterministic given ``rng``.
    """
    h, w = shape
    acc: np.ndarray | None = None
    s = float(scale)
    for o in range(max(1, octaves)):
        s = max(1.0, scale / 2**o)
        gh, gw = int(h / s) + 4, int(w / s) + 4
        layer = rng.standard_normal((gh, gw), dtype=np.float32) * np.float32(persistence**o)
        if acc is not None:
            acc = np.asarray(Image.fromarray(acc).resize((gw, gh), Image.Resampling.BICUBIC), np.float32)
            layer += acc
        acc = layer
        if s <= 1.0:
            break
    assert acc is not None
    if s > 1.0:
        # enlarge only a window of h/s × w/s grid cells at a random offset inside the padded grid
        bh, bw = h / s, w / s
        oy = float(rng.uniform(0.0, max(0.0, acc.shape[0] - bh)))
        ox = float(rng.uniform(0.0, max(0.0, acc.shape[1] - bw)))
        big = Image.fromarray(acc).resize((w, h), Image.Resampling.BICUBIC, box=(ox, oy, ox + bw, oy + bh))
        acc = np.asarray(big, dtype=np.float32)
    else:
        acc = acc[:h, :w]
    sd = float(acc.std())
    out = acc - np.float32(acc.mean())
    if sd > 1e-6:
        out *= np.float32(1.0 / sd)
    return out


# --- fonts --------------------------------------------------------------------------------------------------


def _font_dirs() -> list[Path]:
    env = os.environ.get("OCROBIN_FONT_DIRS")
    dirs = env.split(os.pathsep) if env else list(FONT_DIRS)
    return [Path(d).expanduser() for d in dirs if d]


@functools.lru_cache(maxsize=1)
def font_paths() -> tuple[str, ...]:
    """Every usable text font found in the font folders, sorted (the order is part of determinism)."""
    found: list[str] = []
    for d in _font_dirs():
        if not d.is_dir():
            continue
        for root, _dirs, files in os.walk(d):
            for f in files:
                if f.lower().endswith((".ttf", ".otf")) and not any(w in f.lower() for w in _SKIP_FONT_WORDS):
                    found.append(os.path.join(root, f))
    usable = [p for p in sorted(set(found)) if _font_meta(p) is not None]
    return tuple(usable)


def _missing_glyph(font: Any) -> bytes:
    return bytes(font.getmask("\U000f0001"))


@functools.cache
def _font_meta(path: str) -> tuple[float, frozenset[str]] | None:
    """(x-height / font size, covered scripts) of a font, or None when it is not a usable text face."""
    try:
        font = ImageFont.truetype(path, 100, layout_engine=ImageFont.Layout.BASIC)
    except OSError:
        return None
    return _measure(font)


def _measure(font: Any) -> tuple[float, frozenset[str]] | None:
    try:
        missing = _missing_glyph(font)
        scripts = frozenset(
            s for s, chars in _SCRIPT_PROBES.items() if all(bytes(font.getmask(c)) != missing for c in chars)
        )
        bbox = font.getbbox("x")
        size = float(getattr(font, "size", 11) or 11)
    except (OSError, ValueError):
        return None
    if "latin" not in scripts:
        return None
    ratio = (bbox[3] - bbox[1]) / size
    if not 0.2 <= ratio <= 0.68:
        return None
    return ratio, scripts


@functools.lru_cache(maxsize=1)
def _default_meta() -> tuple[float, frozenset[str]]:
    font = ImageFont.load_default(size=100)
    meta = _measure(font)
    return meta if meta is not None else (0.5, frozenset({"latin"}))


@functools.lru_cache(maxsize=256)
def _load_font(path: str | None, size: int, rtl: bool) -> Any:
    if path is None:
        return ImageFont.load_default(size=size)
    engine = ImageFont.Layout.RAQM if rtl and features.check_feature("raqm") else ImageFont.Layout.BASIC
    return ImageFont.truetype(path, size, layout_engine=engine)


def _font_kind(path: str | None) -> str:
    name = (path or "").lower()
    if any(w in name for w in _HAND_FONT_WORDS):
        return "hand"
    if any(w in name for w in _OLD_FONT_WORDS):
        return "old"
    return "print"


class _Font:
    """A font picked for a block: path (None = Pillow's own), size for a target x-height, script."""

    def __init__(
        self, rng: np.random.Generator, xheight: float, prefer: str, script: str, fonts: Sequence[str] | None
    ) -> None:
        paths = list(font_paths() if fonts is None else fonts)
        ok = [p for p in paths if (m := _font_meta(p)) is not None and script in m[1]]
        if not ok:
            ok = [p for p in paths if _font_meta(p) is not None]
            script = "latin"
        if ok:
            preferred = [p for p in ok if _font_kind(p) == prefer]
            pool = preferred if preferred and rng.random() < 0.85 else ok
            self.path: str | None = pool[int(rng.integers(len(pool)))]
            meta = _font_meta(self.path)
            ratio = meta[0] if meta else 0.5
        else:
            self.path = None
            ratio, scr = _default_meta()
            script = script if script in scr else "latin"
        self.script = script
        self.size = int(max(4, round(xheight / ratio)))
        self.xheight = ratio * self.size
        self.font = _load_font(self.path, self.size, script in _RTL)

    @property
    def name(self) -> str:
        return Path(self.path).stem if self.path else "pillow-default"


def _pick_script(rng: np.random.Generator) -> str:
    r = rng.random()
    if r < 0.62:
        return "latin"
    if r < 0.82:
        return "latin_ext"
    if r < 0.89:
        return "greek"
    if r < 0.95:
        return "cyrillic"
    if r < 0.975:
        return "hebrew"
    return "arabic"


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


# --- pen strokes (handwriting-like) -------------------------------------------------------------------------


def _catmull_rom(pts: np.ndarray, step: float) -> np.ndarray:
    """Points along a Catmull-Rom spline through ``pts`` (N×2), about ``step`` apart."""
    if len(pts) < 2:
        return pts
    p = np.vstack([pts[:1], pts, pts[-1:]])
    p0, p1, p2, p3 = p[:-3], p[1:-2], p[2:-1], p[3:]
    n = np.clip(np.hypot(*(p2 - p1).T) / step, 2, 200).astype(np.int64)
    seg = np.repeat(np.arange(len(n)), n)
    t = ((np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)) / np.repeat(n, n))[:, None]
    p0, p1, p2, p3 = p0[seg], p1[seg], p2[seg], p3[seg]
    t2, t3 = t * t, t * t * t
    out = 0.5 * (
        (2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2 + (-p0 + 3 * p1 - 3 * p2 + p3) * t3
    )
    return np.vstack([out, p[-2:-1]])


class _Pen:
    """A pen: nib width range, nib angle (broad-edge pens write thick downstrokes, thin upstrokes)."""

    def __init__(self, rng: np.random.Generator, xheight: float, ss: int) -> None:
        self.ss = ss
        self.wmax = float(np.clip(xheight * rng.uniform(0.1, 0.3), 1.2, 12.0)) * ss
        broad = rng.random() < 0.55
        self.wmin = self.wmax * (rng.uniform(0.15, 0.5) if broad else rng.uniform(0.7, 1.0))
        self.angle = float(rng.uniform(0.2, 1.2))
        self.pressure = float(rng.uniform(0.0, 0.35))

    def stroke(self, draw: ImageDraw.ImageDraw, path: np.ndarray, rng: np.random.Generator) -> None:
        """Draw a variable-width stroke along ``path`` (points in super-sampled pixels)."""
        if len(path) < 2:
            return
        d = np.gradient(path, axis=0)
        theta = np.arctan2(d[:, 1], d[:, 0])
        w = self.wmin + (self.wmax - self.wmin) * np.abs(np.sin(theta - self.angle))
        if self.pressure > 0:
            k = max(3, len(path) // 6)
            pr = np.interp(np.arange(len(path)), np.linspace(0, len(path) - 1, k), rng.uniform(-1, 1, k))
            w = w * (1.0 + self.pressure * pr)
        w = np.maximum(w, self.ss * 0.8)
        nrm = np.stack([-d[:, 1], d[:, 0]], axis=1)
        nrm /= np.maximum(np.hypot(nrm[:, 0], nrm[:, 1]), 1e-6)[:, None]
        left = path + nrm * (w / 2)[:, None]
        right = path - nrm * (w / 2)[:, None]
        draw.line(path.ravel().tolist(), fill=255, width=max(1, int(w.min())))
        chunk = 8
        for i in range(0, len(path) - 1, chunk):
            j = min(i + chunk, len(path) - 1)
            draw.polygon(np.vstack([left[i : j + 1], right[i : j + 1][::-1]]).ravel().tolist(), fill=255)
        for k in (0, len(path) - 1):
            r = w[k] / 2
            x, y = path[k]
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)


def _cursive_word(
    rng: np.random.Generator, x0: float, y0: float, xh: float, slant: float, nletters: int
) -> tuple[np.ndarray, list[np.ndarray], float]:
    """Control points of one cursive-like word, extra short strokes (dots, bars) and its width."""
    pts = [(x0 - 0.3 * xh, y0 - 0.2 * xh)]
    extras: list[np.ndarray] = []
    x = x0
    for _ in range(nletters):
        lw = xh * rng.uniform(0.5, 0.95)
        kind = rng.choice(5, p=[0.5, 0.17, 0.1, 0.13, 0.1])
        top = -xh * rng.uniform(0.85, 1.1)
        if kind == 0:  # arch / valley (n, m, u)
            pts += [(x + 0.25 * lw, y0 + top), (x + 0.6 * lw, y0 + top * 0.3), (x + 0.9 * lw, y0)]
        elif kind == 1:  # ascender loop (l, b, h)
            asc = -xh * rng.uniform(1.8, 2.6)
            pts += [
                (x + 0.55 * lw, y0 + asc),
                (x + 0.2 * lw, y0 + asc * 0.8),
                (x + 0.3 * lw, y0),
                (x + 0.9 * lw, y0 + top * 0.4),
            ]
        elif kind == 2:  # descender loop (g, y, p)
            desc = xh * rng.uniform(0.9, 1.4)
            pts += [
                (x + 0.5 * lw, y0 + top),
                (x + 0.45 * lw, y0 + desc),
                (x + 0.1 * lw, y0 + desc * 0.7),
                (x + 0.9 * lw, y0),
            ]
        elif kind == 3:  # small loop (e, o, a)
            pts += [
                (x + 0.7 * lw, y0 + top * 0.8),
                (x + 0.3 * lw, y0 + top * 0.9),
                (x + 0.25 * lw, y0 + top * 0.2),
                (x + 0.9 * lw, y0),
            ]
        else:  # stem with dot or bar (i, t)
            pts += [(x + 0.4 * lw, y0 + top), (x + 0.7 * lw, y0)]
            if rng.random() < 0.5:
                cx = x + 0.4 * lw - top * 0.6 * slant
                cy = y0 + top * 1.6
                extras.append(np.array([(cx, cy), (cx + 0.12 * xh, cy + 0.05 * xh)]))
            else:
                cy = y0 + top * 0.95
                cx = x + 0.3 * lw - top * slant
                extras.append(np.array([(cx - 0.4 * xh, cy), (cx + 0.5 * xh, cy - 0.1 * xh)]))
        x += lw
    pts.append((x + 0.2 * xh, y0 - 0.3 * xh))
    a = np.array(pts, dtype=np.float64)
    a += rng.normal(0.0, 0.07 * xh, a.shape)
    a[:, 0] -= (a[:, 1] - y0) * slant
    for e in extras:
        e[:, 0] -= (e[:, 1] - y0) * slant * 0.3
    return a, extras, x - x0


def _scribble_lines(
    rng: np.random.Generator,
    draw: ImageDraw.ImageDraw,
    box: tuple[float, float, float, float],
    xh: float,
    ss: int,
) -> int:
    """Fill ``box`` (super-sampled pixels) with lines of cursive-like scribbles; returns the word count."""
    x0, y0, x1, y1 = box
    xh *= ss
    pen = _Pen(rng, xh / ss, ss)
    slant = float(rng.uniform(-0.15, 0.55))
    spacing = xh * rng.uniform(3.0, 5.0)
    y = y0 + xh * 2.2
    step = max(1.5 * ss, xh / 10)
    words = 0
    while y < y1 - 0.5 * xh:
        slope = rng.normal(0.0, 0.02)
        x = x0 + rng.uniform(0, min(3.0, max(0.0, (x1 - x0) / xh - 2.0))) * xh
        while x < x1 - xh:
            n = int(min(rng.integers(1, 9), max(1, (x1 - x) // (0.75 * xh))))
            yy = y + (x - x0) * slope + rng.normal(0, 0.08 * xh)
            pts, extras, width = _cursive_word(rng, x, yy, xh, slant, n)
            if x + width > x1 + xh:
                break
            pen.stroke(draw, _catmull_rom(pts, step), rng)
            for e in extras:
                pen.stroke(draw, _catmull_rom(e, step), rng)
            if rng.random() < 0.03:  # underline or strike-through
                yu = yy + (xh * 0.35 if rng.random() < 0.7 else -xh * 0.5)
                line = np.array(
                    [(x - 0.2 * xh, yu), (x + width * 0.5, yu + rng.normal(0, 0.1 * xh)), (x + width, yu)]
                )
                pen.stroke(draw, _catmull_rom(line, step), rng)
            words += 1
            x += width + xh * rng.uniform(0.6, 1.8)
        y += spacing * rng.uniform(0.9, 1.1)
    return words


# --- printed layout -----------------------------------------------------------------------------------------


class _Canvas:
    """The page being drawn: a 1× layer for text and a super-sampled layer for strokes and rules."""

    SS = 2

    def __init__(self, h: int, w: int) -> None:
        self.h, self.w = h, w
        self.text = Image.new("L", (w, h), 0)
        self.tdraw = ImageDraw.Draw(self.text)
        self._strokes: Image.Image | None = None
        self._sdraw: ImageDraw.ImageDraw | None = None

    @property
    def sdraw(self) -> ImageDraw.ImageDraw:
        if self._sdraw is None:
            self._strokes = Image.new("L", (self.w * self.SS, self.h * self.SS), 0)
            self._sdraw = ImageDraw.Draw(self._strokes)
        return self._sdraw

    def rule(self, x0: float, y0: float, x1: float, y1: float, width: float) -> None:
        s = self.SS
        self.sdraw.line([(x0 * s, y0 * s), (x1 * s, y1 * s)], fill=255, width=max(1, int(round(width * s))))

    def coverage(self) -> np.ndarray:
        cov = np.asarray(self.text, dtype=np.float32)
        if self._strokes is not None:
            small = self._strokes.reduce(self.SS)
            cov = np.maximum(cov, np.asarray(small, dtype=np.float32))
        return cov * np.float32(1.0 / 255.0)


def _text_lines(
    rng: np.random.Generator,
    canvas: _Canvas,
    box: tuple[float, float, float, float],
    font: _Font,
    align: str,
    spacing: float,
    stroke: int,
    indent: float,
    upper: bool = False,
    max_lines: int | None = None,
    baseline_jitter: float = 0.0,
) -> float:
    """Set paragraphs of random text into ``box``; returns the y where the text ended."""
    x0, y0, x1, y1 = box
    text = TextSource(rng, font.script)
    text.upper = upper
    f = font.font
    space = f.getlength(" ") or font.size * 0.3
    line_h = font.size * spacing
    y = y0
    lines = 0
    rtl = font.script in _RTL
    ascent = font.size * 0.8
    new_par = True
    while y + ascent <= y1 and (max_lines is None or lines < max_lines):
        start = x0 + (indent if new_par else 0.0)
        avail = x1 - start
        words: list[tuple[str, float]] = []
        used = 0.0
        for _ in range(200):
            w = text.word()
            wl = f.getlength(w)
            if used + wl + (space if words else 0) > avail:
                if not words and wl > avail:
                    words.append((w, wl))  # one over-long word: let it be clipped
                break
            used += wl + (space if words else 0)
            words.append((w, wl))
        if not words:
            break
        end_par = rng.random() < 0.12
        gap = space
        if align == "justify" and not end_par and len(words) > 1:
            gap = space + (avail - used) / (len(words) - 1)
        if align == "right" or (rtl and align != "justify"):
            x = x1 - used
        elif align == "center":
            x = start + (avail - used) / 2
        else:
            x = start
        order = words[::-1] if rtl else words
        for w, wl in order:
            dy = rng.normal(0.0, baseline_jitter) if baseline_jitter else 0.0
            canvas.tdraw.text((x, y + dy), w, font=f, fill=255, stroke_width=stroke, stroke_fill=255)
            x += wl + gap
        lines += 1
        y += line_h
        new_par = end_par
        if end_par and rng.random() < 0.3:
            y += line_h * rng.uniform(0.2, 0.8)
    return y


def _table(
    rng: np.random.Generator,
    canvas: _Canvas,
    box: tuple[float, float, float, float],
    xh: float,
    fonts: Sequence[str] | None,
) -> float:
    """A ruled table with short entries; returns the y where it ended."""
    x0, y0, x1, y1 = box
    font = _Font(rng, xh, "print", "latin", fonts)
    row_h = font.size * rng.uniform(1.4, 2.2)
    ncols = int(rng.integers(2, 7))
    nrows = int(max(1, min((y1 - y0) // row_h, rng.integers(3, 60))))
    ncols = int(max(1, min(ncols, (x1 - x0) // (font.size * 3))))
    widths = rng.dirichlet(np.full(ncols, 3.0)) * 0.6 + 0.4 / ncols
    xs = list(x0 + (x1 - x0) * np.concatenate([[0.0], np.cumsum(widths)]))
    lw = float(rng.uniform(0.6, 2.5))
    ruled_rows = rng.random() < 0.6
    text = TextSource(rng, "latin")
    for r in range(nrows + 1):
        y = y0 + r * row_h
        if r in (0, 1, nrows) or ruled_rows:
            canvas.rule(x0, y, x1, y, lw * (1.8 if r in (0, nrows) else 1.0))
    if rng.random() < 0.8:
        for x in xs:
            canvas.rule(x, y0, x, y0 + nrows * row_h, lw)
    for r in range(nrows):
        for c in range(ncols):
            if rng.random() < 0.15:
                continue
            w = random_number(rng) if (c > 0 and rng.random() < 0.6) else text.word()
            cw = xs[c + 1] - xs[c]
            while len(w) > 1 and font.font.getlength(w) > cw - font.size * 0.4:
                w = w[:-1]
            tx = xs[c] + font.size * 0.2
            ty = y0 + r * row_h + (row_h - font.size) / 2
            canvas.tdraw.text((tx, ty), w, font=font.font, fill=255)
    return y0 + nrows * row_h


def _print_blocks(
    rng: np.random.Generator,
    canvas: _Canvas,
    box: tuple[float, float, float, float],
    xh: float,
    fonts: Sequence[str] | None,
    prefer: str,
    info: dict[str, Any],
    allow_tables: bool = True,
) -> None:
    """Fill ``box`` with headings, paragraphs in columns, rules and the odd table."""
    x0, y0, x1, y1 = box
    script = _pick_script(rng)
    body = _Font(rng, xh, prefer, script, fonts)
    info.setdefault("fonts", []).append(body.name)
    info["script"] = body.script
    width = x1 - x0
    ncols = int(rng.choice([1, 1, 1, 2, 2, 3])) if width > 40 * body.size else 1
    gutter = body.size * rng.uniform(1.0, 3.0)
    col_w = (width - gutter * (ncols - 1)) / ncols
    align = str(
        rng.choice(
            ["justify", "justify", "left", "left", "right", "center"], p=[0.3, 0.2, 0.25, 0.15, 0.05, 0.05]
        )
    )
    spacing = float(rng.uniform(1.1, 2.0))
    stroke = int(rng.random() < 0.3 and body.size >= 16)
    indent = body.size * rng.uniform(0, 3) if rng.random() < 0.6 else 0.0
    y = y0
    if rng.random() < 0.45 and y1 - y0 > 6 * body.size:
        head = _Font(rng, min(XHEIGHT_RANGE[1], xh * rng.uniform(1.2, 2.5)), prefer, script, fonts)
        info["fonts"].append(head.name)
        y = _text_lines(
            rng,
            canvas,
            (x0, y, x1, y1),
            head,
            "center" if rng.random() < 0.6 else "left",
            1.2,
            0,
            0.0,
            upper=rng.random() < 0.4,
            max_lines=int(rng.integers(1, 3)),
        )
        if rng.random() < 0.5:
            canvas.rule(x0, y + body.size * 0.2, x1, y + body.size * 0.2, rng.uniform(0.7, 3.0))
            y += body.size * 0.8
    if allow_tables and rng.random() < 0.12 and y1 - y > 8 * body.size:
        y = _table(rng, canvas, (x0, y, x1, min(y1, y + (y1 - y) * rng.uniform(0.3, 0.7))), xh, fonts)
        y += body.size
    for c in range(ncols):
        cx0 = x0 + c * (col_w + gutter)
        _text_lines(rng, canvas, (cx0, y, cx0 + col_w, y1), body, align, spacing, stroke, indent)
        if c and rng.random() < 0.5:
            gx = cx0 - gutter / 2
            canvas.rule(gx, y, gx, y1, rng.uniform(0.6, 2.0))


def _hand_blocks(
    rng: np.random.Generator,
    canvas: _Canvas,
    box: tuple[float, float, float, float],
    xh: float,
    fonts: Sequence[str] | None,
    info: dict[str, Any],
) -> None:
    """Handwriting: a script font with wobbling baselines, or synthetic pen trajectories."""
    x0, y0, x1, y1 = box
    hand_fonts = [p for p in (font_paths() if fonts is None else fonts) if _font_kind(p) == "hand"]
    if hand_fonts and rng.random() < 0.4:
        font = _Font(rng, xh, "hand", "latin_ext" if rng.random() < 0.3 else "latin", fonts)
        info.setdefault("fonts", []).append(font.name)
        _text_lines(
            rng,
            canvas,
            box,
            font,
            "left",
            float(rng.uniform(1.3, 2.4)),
            0,
            font.size * rng.uniform(0, 2),
            baseline_jitter=font.xheight * 0.08,
        )
        info["hand"] = "font"
    else:
        s = canvas.SS
        n = _scribble_lines(rng, canvas.sdraw, (x0 * s, y0 * s, x1 * s, y1 * s), xh, s)
        info["hand"] = "strokes"
        info["words"] = n


def render_page(
    rng: np.random.Generator,
    size: tuple[int, int],
    kind: str | None = None,
    fonts: Sequence[str] | None = None,
    info: dict[str, Any] | None = None,
    xheight: float | None = None,
) -> np.ndarray:
    """Draw a clean synthetic page.

    Args:
        rng: the random generator; the page depends on it (and on the fonts installed) only.
        size: (height, width) in pixels.
        kind: one of :data:`LAYOUTS` (``print``, ``hand``, ``mixed``, ``table``); random when None.
        fonts: font files to choose from (default: :func:`font_paths`; an empty list means Pillow's own).
        info: a dict that receives what was drawn (layout, fonts, x-height), for the sample's JSON.
        xheight: x-height of the main text in pixels (default: drawn from :data:`XHEIGHT_RANGE`).

    Returns:
        float32 H×W ink coverage in [0, 1] (1 = ink), anti-aliased.

    Raises:
        ValueError: ``kind`` is not a known layout or ``size`` is not positive.
    """
    h, w = int(size[0]), int(size[1])
    if h < 1 or w < 1:
        raise ValueError(f"page size must be positive, got {size}")
    if kind is None:
        names = list(LAYOUTS)
        kind = names[int(rng.choice(len(names), p=np.array(list(LAYOUTS.values())) / sum(LAYOUTS.values())))]
    if kind not in LAYOUTS:
        raise ValueError(f"unknown layout {kind!r} (known: {', '.join(LAYOUTS)})")
    info = {} if info is None else info
    canvas = _Canvas(h, w)
    xh_max = min(XHEIGHT_RANGE[1], max(XHEIGHT_RANGE[0], min(h, w) / 6))
    if xheight is not None:
        xh = max(2.0, float(xheight))
    elif rng.random() < 0.4:
        xh = _log_uniform(rng, XHEIGHT_RANGE[0], xh_max)
    else:  # favour mid-size text: real scans have strokes of 3-10 pixels
        xh = float(rng.uniform(min(10.0, xh_max), xh_max))
    info.update(layout=kind, xheight=round(xh, 2))
    m = [float(rng.uniform(-0.04, 0.15)) * s for s in (w, h, w, h)]  # negative margin: text cut by the edge
    box = (m[0], m[1], w - m[2], h - m[3])
    old_style = rng.random() < 0.3
    prefer = "old" if old_style else "print"
    if kind == "print":
        _print_blocks(rng, canvas, box, xh, fonts, prefer, info)
    elif kind == "table":
        y = box[1]
        while y < box[3] - 4 * xh:  # tables, separated by gaps or short paragraphs, until the page is full
            if rng.random() < 0.7:
                y = _table(rng, canvas, (box[0], y, box[2], box[3]), xh, fonts) + xh * rng.uniform(1, 6)
            else:
                y_end = min(box[3], y + xh * rng.uniform(6, 20))
                _print_blocks(
                    rng, canvas, (box[0], y, box[2], y_end), xh, fonts, prefer, info, allow_tables=False
                )
                y = y_end + xh * rng.uniform(1, 3)
        info.setdefault("fonts", [])
    elif kind == "hand":
        _hand_blocks(rng, canvas, box, xh, fonts, info)
    else:  # mixed: printed block(s) with handwritten notes between or beside them
        split = float(rng.uniform(0.3, 0.7))
        if rng.random() < 0.5:
            ym = box[1] + (box[3] - box[1]) * split
            first, second = (box[0], box[1], box[2], ym), (box[0], ym, box[2], box[3])
        else:
            xm = box[0] + (box[2] - box[0]) * split
            first, second = (box[0], box[1], xm, box[3]), (xm + xh, box[1], box[2], box[3])
        if rng.random() < 0.5:
            first, second = second, first
        _print_blocks(rng, canvas, first, xh, fonts, prefer, info, allow_tables=False)
        hand_xh = float(np.clip(xh * rng.uniform(0.7, 1.8), XHEIGHT_RANGE[0], XHEIGHT_RANGE[1]))
        _hand_blocks(rng, canvas, second, hand_xh, fonts, info)
    cov = canvas.coverage()
    if rng.random() < 0.4:
        lo = -0.5 if xh >= 12 else 0.0  # thinning would erase the hairlines of small text
        cov = _stroke_weight(cov, float(rng.uniform(lo, 1.0)))
    return cov


def _stroke_weight(cov: np.ndarray, amount: float) -> np.ndarray:
    """Thicken (amount > 0) or thin (amount < 0) strokes by up to about a pixel, keeping anti-aliasing."""
    soft = gaussian_blur(cov, 0.6 + 0.6 * max(0.0, amount))
    t = 0.5 - 0.35 * amount
    return np.clip((soft - t) * 2.5 + 0.5, 0.0, 1.0).astype(np.float32)
