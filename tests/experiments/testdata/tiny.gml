# A three-city graph in the Internet Topology Zoo's GML dialect (test fixture).
graph [
  directed 0
  label "Tiny"
  node [
    id 0
    label "New York"
    Latitude 40.71
    Longitude -74.01
  ]
  node [
    id 1
    label "Chicago"
    Latitude 41.88
    Longitude -87.63
  ]
  node [
    id 2
    label "Denver"
  ]
  edge [
    source 0
    target 1
    LinkSpeed "10"
    LinkSpeedUnits "G"
    LinkSpeedRaw 10000000000.0
  ]
  edge [
    source 1
    target 2
  ]
]
