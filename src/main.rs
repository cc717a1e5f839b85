fn main() {
    println!("sophos-cw-sync: engine not built yet");
}
