//! Stage 7: the openness claim is believed only as far as the graded components carry it. A
//! claim above the achieved level is refused, unless `--accept-openness` names that level.

use super::Check;
use crate::{openness::Assessment, report::Reason};

pub(super) fn judge(c: &mut Check) -> Option<Assessment> {
    let m = c.manifest?;
    let a = m.assess_openness();
    let claimed = m.openness.claimed;
    let given = c.opts.accept_openness;
    if claimed > a.achieved {
        if given == Some(a.achieved) {
            c.overrides.push(format!(
                "--accept-openness {}: loading as {} although the publisher claims {claimed}",
                a.achieved, a.achieved
            ));
        } else {
            if let Some(given) = given {
                c.warnings.push(format!(
                    "--accept-openness {given} does not apply: the achieved level is {}",
                    a.achieved
                ));
            }
            let reason = Reason::ClaimAboveAchieved {
                claimed,
                achieved: a.achieved,
                rules: a.failures_for(claimed),
            };
            c.refuse(reason);
        }
    } else if let Some(given) = given.filter(|&g| g != a.achieved) {
        c.warnings.push(format!(
            "--accept-openness {given} ignored: the achieved level is {}",
            a.achieved
        ));
    }
    Some(a)
}
