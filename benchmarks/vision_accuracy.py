"""Vision accuracy on real photos: detection, verification and copy detection.

Usage::

    .venv/bin/python benchmarks/vision_accuracy.py
    .venv/bin/python benchmarks/vision_accuracy.py --faces /path/to/faces --workers 2 --json out.json

Every number comes from the code ``disgorge analyze`` and ``disgorge find`` run
(``disgorge.vision``): ``analyze`` (decode with EXIF orientation, HOG detection with the
upsampling retry, landmarks, embedding), ``pdq_dihedral`` and ``HashMatrix.search``, on
the photos of ``shared/data/faces`` (see its README.md):

1. **Detection.** Faces found in ``lfw10x10`` (100 photos, one person each; a few show a
   second face in the background), ``att_orl`` (400 greyscale 92x112 photos) at one
   upsampling only and with the retry ``analyze`` does, ``misc/t1.jpg`` (6 faces) and
   ``misc/no_faces`` (4 photos, no face).
2. **Verification** at ``SAME_PERSON_DISTANCE`` (0.6, Euclidean, dlib's threshold): every
   pair of labelled photos of ``lfw10x10`` (10 people x 10 photos) and ``deepface``
   (``identities.csv``; also the labelled pairs of ``master.csv``). The embedding of a
   photo is that of its largest face. Same-person accept rate and different-person
   reject rate; pairs with a photo where no face was found are counted apart.
3. **Copy detection** at ``DEFAULT_MAX_DISTANCE`` (31 of 256 bits): the PDQ hash of every
   photo of ``lfw10x10`` and ``deepface`` goes into one matrix; each photo is altered
   (resized to 50% and 25%, re-encoded as JPEG quality 30, cropped, mirrored, framed by a
   10-pixel black border) and searched for with its 8 dihedral hashes, as
   ``disgorge find --by copy`` does. Recall: the original is among the matches. False
   matches: any other photo among the matches. Altered copies other than the JPEG-30
   one are saved as JPEG quality 90, as a copy found in the wild would be. Then every
   original is searched for against the others (false matches between distinct photos).
4. **Obama 240p/480p/720p/1080p** (``face_recognition/examples``: one photo re-encoded at
   four sizes): the PDQ distance of every pair, which must all match, and whether any of
   them matches the other photos of that folder.
"""

from __future__ import annotations

import csv
import io
import itertools
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, ImageOps
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import describe, finish, machine, make_console, make_parser, show, write_json

from disgorge.vision.faces import analyze
from disgorge.vision.image import rgb_array
from disgorge.vision.index import SAME_PERSON_DISTANCE
from disgorge.vision.models import dlib_models
from disgorge.vision.phash import DEFAULT_MAX_DISTANCE, HashMatrix, pdq, pdq_dihedral

console = make_console(150)

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"
T = TypeVar("T")


def in_processes(
    fn: Callable[[list[str]], list[T]], batches: list[list[str]], workers: int
) -> Iterator[list[T]]:
    """``fn`` of each batch, in order, on ``workers`` processes (inline for one). Only the
    results count here, not the time, so a plain pool will do."""
    if workers <= 1:
        yield from map(fn, batches)
        return
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        yield from pool.map(fn, batches)


# -- work done in the pool (module level, so workers can import it) ------------------------
@dataclass
class Result:
    name: str
    faces: int
    upsample: int
    first_pass_faces: int  # HOG at one upsampling, no retry
    embedding: bytes | None  # of the largest face
    error: str | None


def _analyze_files(paths: list[str]) -> list[Result]:
    hog = dlib_models(False)["hog"]
    out = []
    for p in paths:
        data = Path(p).read_bytes()
        res = analyze(data, embed=True, phash=False)
        first = len(hog(rgb_array(data), 1)) if not res.error else 0
        emb = None
        if res.faces:
            big = max(res.faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
            emb = big.embedding
        out.append(Result(p, len(res.faces), res.upsample, first, emb, res.error))
    return out


def analyze_all(paths: list[Path], workers: int) -> dict[Path, Result]:
    names = [str(p) for p in paths]
    batches = [names[i : i + 8] for i in range(0, len(names), 8)]
    results: dict[Path, Result] = {}
    for out in in_processes(_analyze_files, batches, workers):
        for r in out:
            results[Path(r.name)] = r
    return results


# -- the altered copies --------------------------------------------------------------------
def _jpeg(im: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _resize(im: Image.Image, f: float) -> Image.Image:
    return im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))), Image.LANCZOS)


def _crop(im: Image.Image, f: float) -> Image.Image:
    dx, dy = round(im.width * f), round(im.height * f)
    return im.crop((dx, dy, im.width - dx, im.height - dy))


VARIANTS = {
    "resize 50%": lambda im: _jpeg(_resize(im, 0.5), 90),
    "resize 25%": lambda im: _jpeg(_resize(im, 0.25), 90),
    "JPEG quality 30": lambda im: _jpeg(im, 30),
    "crop 5% (2.5% off each edge)": lambda im: _jpeg(_crop(im, 0.025), 90),
    "crop 5% off each edge": lambda im: _jpeg(_crop(im, 0.05), 90),
    "horizontal mirror": lambda im: _jpeg(ImageOps.mirror(im), 90),
    "10-px black border": lambda im: _jpeg(ImageOps.expand(im, border=10, fill=(0, 0, 0)), 90),
}


#: pairs of photos in the data that are copies of each other: matching them is right
KNOWN_COPIES = {frozenset(("deepface/img11.jpg", "deepface/img11_reflection.jpg"))}


def _distance(original: bytes, queries: list[bytes]) -> int:
    """PDQ distance from the original's hash to the nearest of a copy's 8 dihedral hashes."""
    o = int.from_bytes(original, "big")
    return min((o ^ int.from_bytes(q, "big")).bit_count() for q in queries)


def _copy_queries(paths: list[str]) -> list[tuple[str, bytes, dict[str, list[bytes]], list[bytes]]]:
    """(path, PDQ hash of the original, {variant: its 8 dihedral hashes}, original's 8)."""
    out = []
    for p in paths:
        rgb = rgb_array(Path(p).read_bytes())
        im = Image.fromarray(rgb)
        variants = {name: pdq_dihedral(rgb_array(make(im))) for name, make in VARIANTS.items()}
        out.append((p, pdq(rgb)[0], variants, pdq_dihedral(rgb)))
    return out


# -- the measurements ----------------------------------------------------------------------
def _rate(num: int, den: int) -> str:
    return f"{num}/{den} ({100 * num / den:.1f}%)" if den else "-"


def detection(root: Path, res: dict[Path, Result]) -> tuple[Table, dict]:
    table = Table(
        title="detection (HOG; analyze retries small photos with more upsampling)", title_justify="left"
    )
    for col in ("set", "photos", "photos with a face", "faces", "expected", "note"):
        table.add_column(col, justify="left" if col in ("set", "note", "expected") else "right")
    facts: dict = {}

    lfw = [r for p, r in res.items() if p.is_relative_to(root / "lfw10x10")]
    with_face = sum(r.faces > 0 for r in lfw)
    extra = sum(r.faces > 1 for r in lfw)
    table.add_row(
        "lfw10x10",
        str(len(lfw)),
        _rate(with_face, len(lfw)),
        str(sum(r.faces for r in lfw)),
        "a face in each of 100",
        f"{extra} photos also show a second face",
    )
    facts["lfw10x10"] = {"photos": len(lfw), "with_face": with_face, "faces": sum(r.faces for r in lfw)}

    att = [r for p, r in res.items() if p.is_relative_to(root / "att_orl")]
    first = sum(r.first_pass_faces > 0 for r in att)
    found = sum(r.faces > 0 for r in att)
    levels = {
        u: sum(1 for r in att if r.faces and r.upsample == u) for u in sorted({r.upsample for r in att})
    }
    table.add_row(
        "att_orl, upsample 1 only",
        str(len(att)),
        _rate(first, len(att)),
        str(sum(r.first_pass_faces for r in att)),
        "a face in each of 400",
        "92x112 greyscale: HOG's known miss",
    )
    table.add_row(
        "att_orl, analyze (retry)",
        str(len(att)),
        _rate(found, len(att)),
        str(sum(r.faces for r in att)),
        "a face in each of 400",
        "found at upsample " + ", ".join(f"{u}: {n}" for u, n in levels.items() if n),
    )
    facts["att_orl"] = {
        "photos": len(att),
        "upsample1_with_face": first,
        "with_face": found,
        "levels": levels,
    }

    t1 = res.get(root / "misc" / "t1.jpg")
    if t1:
        table.add_row(
            "misc/t1.jpg", "1", _rate(int(t1.faces > 0), 1), str(t1.faces), "6 faces", "group photo"
        )
        facts["t1"] = t1.faces
    neg = [r for p, r in res.items() if p.is_relative_to(root / "misc" / "no_faces")]
    table.add_row(
        "misc/no_faces",
        str(len(neg)),
        _rate(sum(r.faces > 0 for r in neg), len(neg)),
        str(sum(r.faces for r in neg)),
        "no face",
        ", ".join(f"{Path(r.name).name}: {r.faces}" for r in neg),
    )
    facts["no_faces"] = {Path(r.name).name: r.faces for r in neg}
    return table, facts


def _pairs_table(rows: list[tuple[str, dict]]) -> Table:
    table = Table(
        title=f"verification at distance {SAME_PERSON_DISTANCE} (largest face)", title_justify="left"
    )
    for col in (
        "set",
        "photos (no face)",
        "same-person accepted",
        "different-person rejected",
        "pair accuracy",
        "pairs skipped",
    ):
        table.add_column(col, justify="left" if col == "set" else "right")
    for name, f in rows:
        table.add_row(
            name,
            f"{f['photos']} ({f['no_face']})",
            _rate(f["same_ok"], f["same"]),
            _rate(f["diff_ok"], f["diff"]),
            f"{100 * (f['same_ok'] + f['diff_ok']) / max(f['same'] + f['diff'], 1):.1f}%",
            str(f["skipped"]),
        )
    return table


def _verify(pairs: list[tuple[Path, Path, bool]], res: dict[Path, Result], photos: set[Path]) -> dict:
    f = {"photos": len(photos), "no_face": sum(res[p].embedding is None for p in photos)}
    f.update(same=0, same_ok=0, diff=0, diff_ok=0, skipped=0, same_max=0.0, diff_min=9.0)
    for a, b, same in pairs:
        ea, eb = res[a].embedding, res[b].embedding
        if ea is None or eb is None:
            f["skipped"] += 1
            continue
        d = float(np.linalg.norm(np.frombuffer(ea, "<f4") - np.frombuffer(eb, "<f4")))
        if same:
            f["same"] += 1
            f["same_ok"] += d <= SAME_PERSON_DISTANCE
            f["same_max"] = max(f["same_max"], d)
        else:
            f["diff"] += 1
            f["diff_ok"] += d > SAME_PERSON_DISTANCE
            f["diff_min"] = min(f["diff_min"], d)
    return f


def verification(root: Path, res: dict[Path, Result]) -> tuple[Table, dict]:
    rows = []
    lfw = sorted(p for p in res if p.is_relative_to(root / "lfw10x10"))
    pairs = [(a, b, a.parent == b.parent) for a, b in itertools.combinations(lfw, 2)]
    rows.append(("lfw10x10, all pairs", _verify(pairs, res, set(lfw))))

    deep = root / "deepface"
    with open(deep / "identities.csv", newline="") as fh:
        ident = {deep / r["file"].strip(): r["identity"].strip() for r in csv.DictReader(fh)}
    labelled = sorted(p for p in ident if p in res)
    pairs = [(a, b, ident[a] == ident[b]) for a, b in itertools.combinations(labelled, 2)]
    rows.append(("deepface, all pairs (identities.csv)", _verify(pairs, res, set(labelled))))
    with open(deep / "master.csv", newline="") as fh:
        master = [
            (deep / r["file_x"].strip(), deep / r["file_y"].strip(), r["Decision"].strip() == "Yes")
            for r in csv.DictReader(fh)
        ]
    master = [m for m in master if m[0] in res and m[1] in res]
    rows.append(("deepface, master.csv pairs", _verify(master, res, {p for m in master for p in m[:2]})))
    return _pairs_table(rows), dict(rows)


def copies(root: Path, workers: int) -> tuple[Table, Table, dict]:
    paths = sorted(str(p) for p in (root / "lfw10x10").glob("*/*.jpg"))
    paths += sorted(str(p) for p in (root / "deepface").glob("*.jpg"))
    batches = [paths[i : i + 8] for i in range(0, len(paths), 8)]
    queries = [q for out in in_processes(_copy_queries, batches, workers) for q in out]
    matrix = HashMatrix.from_hashes([(p, h) for p, h, _v, _o in queries])
    name = {p: str(Path(p).relative_to(root)) for p in paths}

    table = Table(
        title=f"copy detection: {len(paths)} photos (lfw10x10 + deepface), "
        f"PDQ <= {DEFAULT_MAX_DISTANCE} bits, 8 dihedral hashes per query",
        title_justify="left",
    )
    for col in (
        "variant",
        "recall",
        "lfw10x10",
        "deepface",
        "distance to original p50 / p90 / max",
        "false matches (queries)",
        "known copies matched",
    ):
        table.add_column(col, justify="left" if col == "variant" else "right")
    facts: dict = {}
    notes: dict[str, list[str]] = {}

    def known(a: str, b: str) -> bool:
        return frozenset((name[a], name[b])) in KNOWN_COPIES

    def other_hits(p: str, hits: list[tuple[str, int]], variant: str) -> tuple[int, int]:
        false = [(o, d) for o, d in hits if o != p and not known(p, o)]
        for o, d in false:
            notes.setdefault(f"false matches, {variant}", []).append(f"{name[p]} -> {name[o]} ({d})")
        return len(false), sum(1 for o, _ in hits if o != p and known(p, o))

    for variant in VARIANTS:
        found, dists, bad_queries, bad, copies_found = 0, [], 0, 0, 0
        by_set = {"lfw10x10": [0, 0], "deepface": [0, 0]}
        for p, h, variants, _o in queries:
            group = by_set[name[p].split("/", 1)[0]]
            group[1] += 1
            hits = matrix.search(variants[variant])
            dist = _distance(h, variants[variant])
            dists.append(dist)
            if p in dict(hits):
                found += 1
                group[0] += 1
            elif dist <= DEFAULT_MAX_DISTANCE:
                raise SystemExit(f"{name[p]}, {variant}: within the threshold but not returned")
            else:
                notes.setdefault(f"missed, {variant}", []).append(f"{name[p]} ({dist})")
            n_false, n_known = other_hits(p, hits, variant)
            bad_queries += bool(n_false)
            bad += n_false
            copies_found += n_known
        d = np.array(dists)
        table.add_row(
            variant,
            _rate(found, len(queries)),
            *(_rate(*by_set[k]) for k in ("lfw10x10", "deepface")),
            f"{np.median(d):.0f} / {np.percentile(d, 90):.0f} / {d.max()}",
            f"{bad} ({bad_queries})",
            str(copies_found),
        )
        facts[variant] = {
            "recall": found,
            "of": len(queries),
            "by_set": by_set,
            "distance_p50": float(np.median(d)),
            "distance_p90": float(np.percentile(d, 90)),
            "false": bad,
            "false_queries": bad_queries,
            "known_copies_matched": copies_found,
        }

    # originals against each other
    bad_queries, bad, copies_found, nearest = 0, 0, 0, []
    for p, _h, _v, original in queries:
        n_false, n_known = other_hits(p, matrix.search(original), "original")
        bad_queries += bool(n_false)
        bad += n_false
        copies_found += n_known
        nearest.append(min(d for o, d in matrix.search(original, 256) if o != p and not known(p, o)))
    n = np.array(nearest)
    table.add_row(
        "original, against the others",
        "-",
        "-",
        "-",
        f"nearest other photo: {n.min()} / p50 {np.median(n):.0f}",
        f"{bad} ({bad_queries})",
        str(copies_found),
    )
    facts["original"] = {
        "false": bad,
        "false_queries": bad_queries,
        "known_copies_matched": copies_found,
        "nearest_other_min": int(n.min()),
        "nearest_other_p50": float(np.median(n)),
    }
    facts["notes"] = notes

    obama = root / "face_recognition" / "examples"
    sizes = ["obama-240p.jpg", "obama-480p.jpg", "obama-720p.jpg", "obama-1080p.jpg"]
    hashes = {s: pdq_dihedral(rgb_array((obama / s).read_bytes())) for s in sizes}
    grid = Table(title="Obama 240p..1080p: PDQ distance (8 dihedral hashes of the row)", title_justify="left")
    grid.add_column("")
    for s in sizes:
        grid.add_column(s.removeprefix("obama-").removesuffix(".jpg"), justify="right")
    all_match = True
    for a in sizes:
        cells = []
        for b in sizes:
            best = HashMatrix.from_hashes([(b, hashes[b][0])]).search(hashes[a], 256)[0][1]
            all_match &= best <= DEFAULT_MAX_DISTANCE
            cells.append(str(best))
        grid.add_row(a.removeprefix("obama-").removesuffix(".jpg"), *cells)
    others = sorted(
        p for p in obama.rglob("*") if p.suffix.lower() in (".jpg", ".png") and p.name not in sizes
    )
    other = HashMatrix.from_hashes(
        [(str(p.relative_to(obama)), pdq(rgb_array(p.read_bytes()))[0]) for p in others]
    )
    cross = sorted({(o, d) for s in sizes for o, d in other.search(hashes[s])})
    facts["obama"] = {"all_match": all_match, "matches_among_other_photos": cross, "others": len(others)}
    return table, grid, facts


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__, compare=False)
    parser.add_argument("--faces", type=Path, default=FACES, help=f"photo folder (default {FACES})")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)"
    )
    parser.add_argument("--copies-only", action="store_true", help="skip detection and verification")
    args = parser.parse_args(argv)
    root = args.faces.resolve()
    if not (root / "lfw10x10").is_dir():
        raise SystemExit(f"{root}: no lfw10x10 folder; see --faces")
    started = time.perf_counter()
    info = machine()
    console.print(describe(info))
    console.print(f"photos: {root}")

    det: dict = {}
    ver: dict = {}
    errors: dict = {}
    if not args.copies_only:
        paths = sorted((root / "lfw10x10").glob("*/*.jpg"))
        paths += sorted((root / "att_orl").glob("*/*.pgm"))
        paths += sorted((root / "deepface").glob("*.jpg"))
        paths += [root / "misc" / "t1.jpg", *sorted((root / "misc" / "no_faces").iterdir())]
        with console.status(f"analysing {len(paths)} photos ..."):
            res = analyze_all(paths, args.workers)
        errors = {str(p): r.error for p, r in res.items() if r.error}
        if errors:
            console.print(f"[red]could not analyse: {errors}[/]")
        det_table, det = detection(root, res)
        show(console, det_table, args.markdown)
        ver_table, ver = verification(root, res)
        show(console, ver_table, args.markdown)
        for name, f in ver.items():
            console.print(
                f"  {name}: largest same-person distance {f['same_max']:.3f}, "
                f"smallest different-person distance {f['diff_min']:.3f}"
            )
    with console.status("copy detection ..."):
        copy_table, grid, cp = copies(root, args.workers)
    show(console, copy_table, args.markdown)
    console.print(
        "  known copies: "
        + "; ".join(" and ".join(sorted(pair)) for pair in sorted(KNOWN_COPIES, key=sorted))
        + " (the same photo, mirrored and enlarged)"
    )
    for what, items in cp["notes"].items():
        shown = items if len(items) <= 8 else [*items[:8], f"... {len(items) - 8} more"]
        console.print(f"  {what}: " + "; ".join(shown))
    show(console, grid, args.markdown)
    ob = cp["obama"]
    console.print(
        f"all four match each other: {'yes' if ob['all_match'] else 'NO'}; matches among the "
        f"{ob['others']} other photos of face_recognition/examples: "
        + (", ".join(f"{o} ({d})" for o, d in ob["matches_among_other_photos"]) or "none")
    )
    console.print(f"took {time.perf_counter() - started:.0f} s; " + finish(info))
    write_json(
        args.json,
        {"machine": info, "detection": det, "verification": ver, "copies": cp, "errors": errors},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
