"""Rule anat_preprocess: N4, T1w->MNI registration (antspyx), template-propagated brain mask."""

import pandas as pd

from sfc import anat, io
from sfc.logs import script_logger

log = script_logger(snakemake.log[0], job=snakemake)
out, params = snakemake.output, snakemake.params
suffix = "0GenericAffine.mat"
assert out.affine.endswith(suffix), out.affine
# the mirror is not a param: where a verified file comes from changes no result, so changing it reruns nothing
template = anat.load_template(params.template_dir, download=params.download, mirror=snakemake.config["atlas_mirror"])
log.info("template: %s (%s); registration: %s", template.source, template.space, params.transform)
qc = anat.preprocess_t1(snakemake.input.t1w, template, out.t1w, out.mask, out.brain, out.affine[: -len(suffix)],
                        transform=params.transform, seed=params.seed)
io.write_tsv(out.qc, pd.DataFrame([qc]))
log.info("anat QC: %s", qc)
