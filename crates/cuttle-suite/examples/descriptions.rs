//! Prints the descriptions of a suite's jobs, one per line, for comparing with
//! `teuthology-suite --dry-run`:
//! `descriptions QA_DIR SUITE SEED [WHICH/OF] [FILTER]`.

use cuttle_suite::{BaseConfig, Disk, Expansion, Filters, Request};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let subset = args.get(3).filter(|s| !s.is_empty()).map(|s| {
        let (a, b) = s.split_once('/').expect("WHICH/OF");
        (a.parse().unwrap(), b.parse().unwrap())
    });
    let filter_in = args
        .get(4)
        .map(|f| f.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let request = Request {
        qa_dir: args[0].clone().into(),
        suite: args[1].clone(),
        subset,
        no_nested_subset: false,
        seed: args[2].parse().unwrap(),
        filters: Filters {
            filter_in,
            ..Filters::default()
        },
        limit: 0,
        arch: None,
        base: BaseConfig::default(),
    };
    let expansion = Expansion::plan(&Disk, request).unwrap_or_else(|e| panic!("{e}"));
    for job in expansion {
        println!("{}", job.unwrap_or_else(|e| panic!("{e}")).description);
    }
}
