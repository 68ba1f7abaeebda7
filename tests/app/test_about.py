"""The About tab cites the papers the methods come from, each with its link."""

from __future__ import annotations

from ssm_metarl.app import about

EXPECTED = {
    "MAML": ("Finn", 2017, "https://arxiv.org/abs/1703.03400"),
    "RL²": ("Duan", 2016, "https://arxiv.org/abs/1611.02779"),
    "LRU": ("Orvieto", 2023, "https://arxiv.org/abs/2303.06349"),
    "S5": ("Smith", 2023, "https://arxiv.org/abs/2208.04933"),
    "PPO": ("Schulman", 2017, "https://arxiv.org/abs/1707.06347"),
    "GAE": ("Schulman", 2016, "https://arxiv.org/abs/1506.02438"),
    "Experience replay": ("Lin", 1992, "https://doi.org/10.1007/BF00992699"),
    "Griffin / RG-LRU": ("De", 2024, "https://arxiv.org/abs/2402.19427"),
}


def test_about_cites_every_method_with_its_link():
    by_method = {next(m for m in EXPECTED if r.method.startswith(m)): r for r in about.REFERENCES}
    assert by_method.keys() == EXPECTED.keys() and len(about.REFERENCES) == len(EXPECTED)
    for method, (first_author, year, url) in EXPECTED.items():
        ref = by_method[method]
        assert ref.authors.startswith(first_author) and ref.year == year and ref.url == url
        line = f"* **{ref.method}**: {ref.authors} ({ref.year}), [{ref.title}]({ref.url})."
        assert line in about.REFERENCES_MD.splitlines()
    assert "Self-improving reactive agents" in by_method["Experience replay"].title
    assert about.REFERENCES_MD.startswith("### References")


def test_the_app_page_shows_the_references(tmp_path):
    from ssm_metarl.app import build_app

    demo = build_app(tmp_path)
    (refs,) = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "about-references"]
    assert refs.value.strip() == about.REFERENCES_MD.strip()
