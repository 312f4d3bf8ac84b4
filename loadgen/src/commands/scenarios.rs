//! `loadgen scenarios`: the target's scenario catalogue, as a table or as
//! the raw JSON.

use std::time::Duration;

use anyhow::Result;
use clap::Args;
use leaklab_model::Catalogue;

use crate::errors::exit;
use crate::target::spawn::Launch;
use crate::target::{Control, TargetOpts};

/// Options of `loadgen scenarios`.
#[derive(Args, Debug)]
pub struct ScenariosOpts {
    #[command(flatten)]
    pub target: TargetOpts,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

/// Prints the catalogue.
pub async fn execute(opts: &ScenariosOpts) -> Result<u8> {
    let service = if opts.target.spawn {
        Some(Launch::new().start().await?)
    } else {
        None
    };
    let url = service
        .as_ref()
        .map(|s| s.url.clone())
        .unwrap_or(opts.target.target.clone());
    let control = Control::new(&opts.target.access.target(&url)?);
    control.wait_ready(Duration::from_secs(10)).await?;
    let text = control.get_text("/admin/scenarios").await?;
    if opts.json {
        println!("{text}");
        return Ok(exit::NO_LEAK);
    }
    print_table(&serde_json::from_str(&text)?);
    Ok(exit::NO_LEAK)
}

fn print_table(catalogue: &Catalogue) {
    println!(
        "{:<20} {:<13} {:<10} {:>10} {:>6} {:>10}  recipe",
        "id", "class", "component", "bytes/req", "tasks", "rss/req"
    );
    for s in catalogue.iter() {
        let recipe: Vec<String> = s
            .recipe
            .iter()
            .map(|st| {
                format!(
                    "{} {}{}",
                    st.method,
                    st.path,
                    if st.body_bytes > 0 {
                        format!(" ({} B body)", st.body_bytes)
                    } else {
                        String::new()
                    }
                )
            })
            .collect();
        println!(
            "{:<20} {:<13} {:<10} {:>10} {:>6} {:>10}  {}{}",
            s.id,
            s.class.as_str(),
            s.component,
            s.bytes_per_request,
            s.tasks_per_request,
            s.rss_bytes_per_request,
            recipe.join(" then "),
            if s.negative_control {
                "  [negative control]"
            } else {
                ""
            }
        );
    }
}
