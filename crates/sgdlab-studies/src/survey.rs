//! The survey's claims, one per PROTOCOLS.md section (its summary table), for the index page:
//! every section is listed, with its study's verdict or "no study yet".

/// One claim of the survey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SurveyClaim {
    /// The PROTOCOLS.md section ("7.1").
    pub section: &'static str,
    /// The family it belongs to ("Broad minima").
    pub family: &'static str,
    /// The paper.
    pub paper: &'static str,
    /// The claim in a few words.
    pub claim: &'static str,
}

const fn c(section: &'static str, family: &'static str, paper: &'static str, claim: &'static str) -> SurveyClaim {
    SurveyClaim { section, family, paper, claim }
}

/// The 28 claims, in PROTOCOLS.md order.
pub const CLAIMS: &[SurveyClaim] = &[
    c("1.1", "Rank", "Timor, Vardi & Shamir 2022", "gradient flow on deep ReLU nets lowers the rank of the weights"),
    c("1.2", "Rank", "Galanti & Poggio 2022", "SGD noise with weight decay gives low-rank weights"),
    c("1.3", "Rank", "Huh et al. 2021", "deeper networks have lower-rank embeddings and complete low-rank matrices"),
    c("2.1", "Spectral bias", "Rahaman et al. 2019", "low frequencies are learned first"),
    c(
        "2.2",
        "Spectral bias",
        "Yang & Salman 2019",
        "CK/NTK spectra on the boolean cube; random nets favour simple functions",
    ),
    c("2.3", "Spectral bias", "Hong et al. 2022", "the Hat activation removes spectral bias"),
    c("2.4", "Spectral bias", "Yu, Yang & Townsend 2022", "Sobolev-norm losses tune the frequency bias"),
    c(
        "3.1",
        "Effective depth",
        "Galanti, Galanti & Ben-Shaul 2022",
        "NCC-separability depth does not grow with depth, grows with label noise",
    ),
    c("3.2", "Effective depth", "Papyan, Han & Donoho 2020", "neural collapse NC1-NC4 in the terminal phase"),
    c("3.3", "Effective depth", "Veit, Wilber & Belongie 2016", "residual nets behave like ensembles of shallow paths"),
    c("4", "Geometric complexity", "Dherin et al. 2022", "SGD's implicit regularisation lowers geometric complexity"),
    c("5", "Simplicity bias", "Shah et al. 2020", "networks rely on the simplest feature exclusively"),
    c("6.1", "Training dynamics", "Nakkiran et al. 2019", "SGD learns functions of increasing complexity"),
    c(
        "6.2",
        "Training dynamics",
        "Refinetti, Ingrosso & Goldt 2023",
        "networks learn distributions of increasing complexity",
    ),
    c("6.3", "Training dynamics", "Merrill et al. 2021", "transformer parameter norms grow like sqrt(t) and saturate"),
    c("7.1", "Broad minima", "Keskar et al. 2017", "large batches find sharper minima"),
    c(
        "7.2",
        "Broad minima",
        "Cohen et al. 2021 (edge of stability)",
        "lambda_max settles at 2/eta; small batches are flatter",
    ),
    c("7.3", "Broad minima", "Bradley et al. 2022", "shift-curvature predicts the generalisation gap"),
    c("7.4", "Broad minima", "Chaudhari et al. 2017", "Entropy-SGD finds flatter minima"),
    c("8.1", "SGD noise", "Zhu et al. 2019", "anisotropic SGD noise escapes sharp minima"),
    c("8.2", "SGD noise", "Hodgkinson & Mahoney 2021", "multiplicative noise gives heavy-tailed iterates"),
    c("8.3", "SGD noise", "Ma & Ying 2021", "flatness bounds the input-gradient norm (Sobolev regularisation)"),
    c("8.4", "SGD noise", "Zhou et al. 2020", "SGD's heavier-tailed noise escapes before Adam's"),
    c(
        "9.1",
        "Step noise",
        "Barrett & Dherin 2021",
        "implicit gradient regularisation: GD follows L + (h/4)||grad L||^2",
    ),
    c("9.2", "Step noise", "Andriushchenko et al. 2023", "large steps give sparse features"),
    c("9.3", "Step noise", "Smith et al. 2021", "SGD's modified loss explains its batch-size effect"),
    c("10.1", "Compression", "Mingard et al. 2021", "SGD samples functions like the Bayesian prior"),
    c(
        "10.2",
        "Compression",
        "Maddox, Benton & Wilson 2020",
        "most Hessian eigenvalues are near zero; effective dimensionality",
    ),
];

/// The claim of a section.
pub fn claim(section: &str) -> Option<&'static SurveyClaim> {
    CLAIMS.iter().find(|c| c.section == section)
}

#[cfg(test)]
mod tests {
    #[test]
    fn twenty_eight_sections_each_once() {
        assert_eq!(super::CLAIMS.len(), 28);
        let mut s: Vec<&str> = super::CLAIMS.iter().map(|c| c.section).collect();
        s.sort_unstable();
        s.dedup();
        assert_eq!(s.len(), 28);
    }
}
