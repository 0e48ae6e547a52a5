"""Regenerate the label tables of this folder from the atlases' official label lists.

Run once by a maintainer (not by the workflow):

    python resources/atlases/make_label_tables.py BNA246_labels.tsv HarvardOxford-cort_labels.tsv \
        HarvardOxford-sub_labels.tsv

The inputs are the checked label tables that accompany the atlas images
(Brainnetome: names, lobe, gyrus, Yeo networks; Harvard-Oxford: names as in
FSL's XML). The outputs hold only what the workflow needs, in matrix order.
"""

import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).parent

# Harvard-Oxford cortical label -> (lobe, Brainnetome gyrus code). The gyrus code lets
# the cross-atlas table match regions by anatomy; "" where no Brainnetome gyrus covers
# the HO label as a whole (e.g. frontal pole, opercula).
HO_CORTICAL_ANATOMY = {
    1: ("Frontal Lobe", ""), 2: ("Insular Lobe", "INS"), 3: ("Frontal Lobe", "SFG"),
    4: ("Frontal Lobe", "MFG"), 5: ("Frontal Lobe", "IFG"), 6: ("Frontal Lobe", "IFG"),
    7: ("Frontal Lobe", "PrG"), 8: ("Temporal Lobe", ""), 9: ("Temporal Lobe", "STG"),
    10: ("Temporal Lobe", "STG"), 11: ("Temporal Lobe", "MTG"), 12: ("Temporal Lobe", "MTG"),
    13: ("Temporal Lobe", "MTG"), 14: ("Temporal Lobe", "ITG"), 15: ("Temporal Lobe", "ITG"),
    16: ("Temporal Lobe", "ITG"), 17: ("Parietal Lobe", "PoG"), 18: ("Parietal Lobe", "SPL"),
    19: ("Parietal Lobe", "IPL"), 20: ("Parietal Lobe", "IPL"), 21: ("Parietal Lobe", "IPL"),
    22: ("Occipital Lobe", "LOcC"), 23: ("Occipital Lobe", "LOcC"), 24: ("Occipital Lobe", "MVOcC"),
    25: ("Frontal Lobe", ""), 26: ("Frontal Lobe", ""), 27: ("Limbic Lobe", ""),
    28: ("Limbic Lobe", ""), 29: ("Limbic Lobe", "CG"), 30: ("Limbic Lobe", "CG"),
    31: ("Parietal Lobe", "Pcun"), 32: ("Occipital Lobe", "MVOcC"), 33: ("Frontal Lobe", "OrG"),
    34: ("Limbic Lobe", "PhG"), 35: ("Limbic Lobe", "PhG"), 36: ("Occipital Lobe", "MVOcC"),
    37: ("Temporal Lobe", "FuG"), 38: ("Temporal Lobe", "FuG"), 39: ("Temporal Lobe", "FuG"),
    40: ("Occipital Lobe", ""), 41: ("Frontal Lobe", ""), 42: ("Insular Lobe", ""),
    43: ("Parietal Lobe", ""), 44: ("Temporal Lobe", "STG"), 45: ("Temporal Lobe", "STG"),
    46: ("Temporal Lobe", "STG"), 47: ("Occipital Lobe", "MVOcC"), 48: ("Occipital Lobe", "LOcC"),
}
# Subcortical grey-matter nuclei kept from HarvardOxford-sub (image value -> gyrus code).
HO_SUBCORTICAL_KEPT = {
    4: "Tha", 5: "BG", 6: "BG", 7: "BG", 9: "Hipp", 10: "Amyg", 11: "BG",
    15: "Tha", 16: "BG", 17: "BG", 18: "BG", 19: "Hipp", 20: "Amyg", 21: "BG",
}


def bna246_table(source: Path) -> pd.DataFrame:
    src = pd.read_csv(source, sep="\t")
    return pd.DataFrame({
        "index": src["index"],
        "name": src["name"],
        "hemisphere": src["hemisphere"],
        "lobe": src["lobe"],
        "gyrus": src["gyrus"].str.split(",").str[0].str.strip(),
        "description": src["description"],
        "yeo7": src["yeo7"],
        "yeo17": src["yeo17"],
        "x_mm": src["mni_x"], "y_mm": src["mni_y"], "z_mm": src["mni_z"],
    })


def hoa_table(cortical: Path, subcortical: Path) -> pd.DataFrame:
    """Left cortical 1-48, right cortical 49-96, then the 14 subcortical nuclei 97-110."""
    cort = pd.read_csv(cortical, sep="\t").set_index("index")
    sub = pd.read_csv(subcortical, sep="\t").set_index("index")
    rows = []
    for hemi, side, offset in (("L", "Left", 0), ("R", "Right", 48)):
        for value, (lobe, gyrus) in HO_CORTICAL_ANATOMY.items():
            rows.append({"index": value + offset, "name": f"{side}_{cort.loc[value, 'name_underscore']}",
                         "hemisphere": hemi, "lobe": lobe, "gyrus": gyrus,
                         "description": cort.loc[value, "name"], "source": "cortical", "source_value": value})
    for i, (value, gyrus) in enumerate(HO_SUBCORTICAL_KEPT.items()):
        rows.append({"index": 97 + i, "name": sub.loc[value, "name_underscore"],
                     "hemisphere": sub.loc[value, "hemisphere"], "lobe": "Subcortical Nuclei", "gyrus": gyrus,
                     "description": sub.loc[value, "name"], "source": "subcortical", "source_value": value})
    return pd.DataFrame(rows)


if __name__ == "__main__":
    bna, ho_cort, ho_sub = map(Path, sys.argv[1:4])
    bna246_table(bna).to_csv(HERE / "atlas-BNA246_dseg.tsv", sep="\t", index=False)
    hoa_table(ho_cort, ho_sub).to_csv(HERE / "atlas-HOA_dseg.tsv", sep="\t", index=False)
