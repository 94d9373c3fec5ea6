//! Off-site repository benchmark: the same sealed backup uploaded to and downloaded from an
//! S3 server and a directory, in one process, with the peak RSS of the S3 upload.
//!
//! Run through `bench/offsite-bench.sh`, which starts the S3 server (moto) and passes:
//!   offsite_bench <work-dir> <size-mb> <s3-endpoint> <bucket>
//!
//! The backup is one large file (a custom-format participant dump) plus small ones (the
//! validator dump, the table of contents), filled with incompressible bytes like a
//! compressed dump. Timed: `OffsiteRepo::upload` (what a backup adds per repository) and
//! `OffsiteRepo::download` with every file's sha256 checked (what a restore adds). Peak
//! RSS is read from /proc/self/status (VmHWM) after resetting it (clear_refs = 5) just
//! before the S3 upload, so it covers that upload only.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use splice_dr::config::OffsiteConfig;
use splice_dr_repo::offsite::OffsiteRepo;
use splice_dr_repo::store::{dir::DirStore, s3::S3Store};
use splice_dr_repo::Repository;

fn fill(path: &Path, bytes: u64, seed: u64) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut x = seed | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn mib_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / (1 << 20) as f64 / secs
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        anyhow::bail!("usage: offsite_bench <work-dir> <size-mb> <s3-endpoint> <bucket>");
    }
    let work = PathBuf::from(&args[1]);
    let size_mb: u64 = args[2].parse()?;
    let (endpoint, bucket) = (&args[3], &args[4]);

    let repo = Repository::open(&work.join("repo"))?;
    let w = repo.begin("bench", 0)?;
    let dir = w.dump_dir("participant");
    std::fs::create_dir_all(&dir)?;
    fill(
        &dir.join("participant.pgdump"),
        (size_mb << 20) * 95 / 100,
        7,
    )?;
    let vdir = w.dump_dir("validator");
    std::fs::create_dir_all(&vdir)?;
    fill(
        &vdir.join("validator.pgdump"),
        (size_mb << 20) * 5 / 100,
        11,
    )?;
    std::fs::write(dir.join("toc.txt"), "bench")?;
    let manifest = w.seal(&mut |_| {})?;
    let bytes = manifest.total_bytes();
    println!(
        "backup {}: {} files, {:.1} MiB",
        manifest.id,
        manifest.files.len(),
        bytes as f64 / 1048576.0
    );

    let s3_cfg = OffsiteConfig {
        endpoint: Some(endpoint.clone()),
        prefix: "bench".into(),
        path_style: true,
        ..OffsiteConfig::s3("s3", bucket)
    };
    let s3 = OffsiteRepo::with_store("s3", Box::new(S3Store::new(&s3_cfg)?));
    let local = OffsiteRepo::with_store("dir", Box::new(DirStore::new(&work.join("offsite-dir"))));

    let time = |f: &mut dyn FnMut() -> anyhow::Result<()>| -> anyhow::Result<f64> {
        let t = Instant::now();
        f()?;
        Ok(t.elapsed().as_secs_f64())
    };
    let up_dir = time(&mut || Ok(local.upload(&repo, &manifest, &mut |_| {})?))?;
    std::fs::write("/proc/self/clear_refs", "5")?;
    let rss_before = status_kib("VmRSS:");
    let up_s3 = time(&mut || Ok(s3.upload(&repo, &manifest, &mut |_| {})?))?;
    let peak = status_kib("VmHWM:");

    let down_repo = |name: &str| Repository::open(&work.join(format!("restore-{name}")));
    let r_dir = down_repo("dir")?;
    let r_s3 = down_repo("s3")?;
    let down_dir = time(&mut || {
        Ok(local
            .download(&r_dir, &manifest.id, &mut |_| {})
            .map(|_| ())?)
    })?;
    let down_s3 = time(&mut || Ok(s3.download(&r_s3, &manifest.id, &mut |_| {}).map(|_| ())?))?;

    println!("| transfer | directory | S3 (moto) | S3 / directory throughput |");
    println!("|---|---|---|---|");
    println!(
        "| upload (backup → repository) | {:.1} s, {:.0} MiB/s | {:.1} s, {:.0} MiB/s | {:.2} |",
        up_dir,
        mib_s(bytes, up_dir),
        up_s3,
        mib_s(bytes, up_s3),
        up_dir / up_s3
    );
    println!(
        "| download with sha256 check (repository → restore) | {:.1} s, {:.0} MiB/s | {:.1} s, {:.0} MiB/s | {:.2} |",
        down_dir,
        mib_s(bytes, down_dir),
        down_s3,
        mib_s(bytes, down_s3),
        down_dir / down_s3
    );
    println!(
        "peak RSS during the {:.0} MiB S3 upload: {:.1} MiB (RSS before it: {:.1} MiB)",
        bytes as f64 / 1048576.0,
        peak as f64 / 1024.0,
        rss_before as f64 / 1024.0
    );
    Ok(())
}
